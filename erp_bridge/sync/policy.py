"""What a channel shows, from what the system of record says: pure arithmetic, no I/O.

DESIGN.md flow 1: basis - buffer, x allocation %, capped, never below 0, rounded down when the
channel takes integers (never show stock that is not there).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

from ..domain import Availability
from ..errors import MappingError

if TYPE_CHECKING:  # the policy is a mapping model; this module stays a leaf below mapping/
    from ..mapping.schema import QuantityPolicy


@dataclass(frozen=True)
class ChannelFigure:
    quantity: Decimal
    low_stock: bool | None


def channel_quantity(policy: QuantityPolicy, availability: Availability) -> Decimal:
    """basis - buffer, x allocation %, capped at max_listed, never below 0, rounded down if integer."""
    basis = _basis(policy, availability)
    quantity = (basis - policy.safety_buffer) * policy.allocation_percent / 100
    if policy.max_listed is not None:
        quantity = min(quantity, policy.max_listed)
    quantity = max(quantity, Decimal(0))
    return quantity.to_integral_value(rounding=ROUND_FLOOR) if policy.integer else quantity


def channel_figure(policy: QuantityPolicy, availability: Availability) -> ChannelFigure:
    quantity = channel_quantity(policy, availability)
    return ChannelFigure(quantity, low_stock(policy, quantity))


def low_stock(policy: QuantityPolicy | None, quantity: Decimal) -> bool | None:
    """True at or under the threshold; None when the policy states no threshold (unknown, not False)."""
    if policy is None or policy.low_stock_threshold is None:
        return None
    return quantity <= policy.low_stock_threshold


def _basis(policy: QuantityPolicy, availability: Availability) -> Decimal:
    if policy.basis == "free":
        return availability.free
    if policy.basis == "on_hand":
        return availability.on_hand
    if availability.forecast is None:
        # missing is not zero: pushing 0 would delist stock the SoR simply did not report
        raise MappingError(f"basis is forecast but the system of record sent no forecast for "
                           f"{availability.item}@{availability.location}")
    return availability.forecast
