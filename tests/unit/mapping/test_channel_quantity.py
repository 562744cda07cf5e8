"""The channel quantity policy: basis, buffer, allocation, cap, never below zero, round down."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from erp_bridge.domain import Availability
from erp_bridge.errors import MappingError
from erp_bridge.mapping.schema import QuantityPolicy
from erp_bridge.sync.policy import channel_figure, channel_quantity


def _avail(**kw):
    base = {"item": "chair", "location": "WH/Stock", "on_hand": D(10), "free": D(7)}
    return Availability(**{**base, **kw})


CASES = [
    # id, policy, availability, expected
    ("free_basis", {}, {}, D(7)),
    ("on_hand_basis", {"basis": "on_hand"}, {}, D(10)),
    ("forecast_basis", {"basis": "forecast"}, {"forecast": D(12)}, D(12)),
    ("buffer_subtracted", {"safety_buffer": D(2)}, {}, D(5)),
    ("never_below_zero_after_buffer", {"safety_buffer": D(9)}, {}, D(0)),
    ("oversold_free_shows_zero", {}, {"free": D(-4)}, D(0)),
    ("allocation_rounds_down", {"allocation_percent": D(50)}, {}, D(3)),
    ("buffer_before_allocation", {"safety_buffer": D(2), "allocation_percent": D(50)}, {"free": D(10)}, D(4)),
    ("fraction_kept_when_not_integer", {"integer": False, "allocation_percent": D(50)}, {"free": D("7.5")}, D("3.75")),
    ("integer_rounds_down_not_half_up", {}, {"free": D("2.9")}, D(2)),
    ("cap_applies", {"max_listed": D(5)}, {"free": D(9)}, D(5)),
    ("cap_zero_lists_nothing", {"max_listed": D(0)}, {"free": D(9)}, D(0)),
    ("cap_null_means_no_cap", {"max_listed": None}, {"free": D(900)}, D(900)),
    ("zero_free_is_zero", {}, {"free": D(0)}, D(0)),
]


@pytest.mark.parametrize("policy, availability, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_channel_quantity(policy, availability, expected):
    result = channel_quantity(QuantityPolicy(**{"basis": "free", **policy}), _avail(**availability))
    assert result == expected
    assert isinstance(result, D)


def test_missing_forecast_is_an_error_not_zero():
    with pytest.raises(MappingError, match="no forecast for chair@WH/Stock"):
        channel_quantity(QuantityPolicy(basis="forecast"), _avail(forecast=None))


@pytest.mark.parametrize("threshold, free, flag", [
    (D(3), D(3), True), (D(3), D(4), False), (D(0), D(0), True), (None, D(0), None),
], ids=["at_threshold", "above_threshold", "zero_threshold_at_zero", "no_threshold_is_unknown"])
def test_low_stock_flag(threshold, free, flag):
    figure = channel_figure(QuantityPolicy(basis="free", low_stock_threshold=threshold), _avail(free=free))
    assert figure.low_stock is flag
