"""Magento 2 / Adobe Commerce: a channel. Availability out per MSI source (or to the legacy stock
item of single-source shops); sales in from orders polled by ``updated_at``. See
docs/connectors/magento.md."""
from __future__ import annotations

from ...errors import ConfigError
from ...mapping.binder import Binder
from ...mapping.schema import SystemMapping
from ..runtime.context import ConnectorContext
from ..runtime.webhooks import check_order_statuses, order_location
from . import orders
from .connector import MagentoConnector, magento_message


def from_context(ctx: ConnectorContext) -> MagentoConnector:
    """Registry factory: the sender (integration access token as bearer, Magento's error envelope),
    the inbox in the queue's storage (the poller's cursor and seen keys), the SKU table."""
    m = ctx.mapping
    if m.connection.auth.kind != "bearer":
        raise ConfigError(f"{m.system}: Magento takes auth kind bearer with secrets.token (the integration's "
                          f"access token), not {m.connection.auth.kind}")
    if not str(m.connection.base_url).rstrip("/").endswith("/rest") and "/rest/" not in str(m.connection.base_url):
        raise ConfigError(f"{m.system}: connection.base_url must end with /rest/<store code> (e.g. "
                          f"https://shop.example.com/rest/default or /rest/all): the bridge appends /V1/...")
    if m.items.lookup is not None and ctx.table is None:
        raise ConfigError(f"{m.system}: items.lookup names {m.items.lookup.file} but no table was loaded")
    check_order_statuses(m)
    _check_single_source(m)
    binder = Binder(m, ctx.table)
    rules = orders.Rules(m.system, order_location(m), binder.sku_of, *_statuses(m))
    return MagentoConnector(m, ctx.sender(message=magento_message), ctx.inbox(), binder, rules)


def _statuses(m: SystemMapping) -> tuple[tuple[str, ...], tuple[str, ...]]:
    hooks = m.webhooks
    sale = tuple(hooks.sale_statuses) if hooks and hooks.sale_statuses else orders.SALE_STATES
    back = tuple(hooks.restock_statuses) if hooks and hooks.restock_statuses else orders.RESTOCK_STATES
    return sale, back


def _check_single_source(m: SystemMapping) -> None:
    codes = {e.code for e in m.locations.map}
    if m.writes.single_source and len(codes) != 1:
        raise ConfigError(f"{m.system}: writes.single_source keeps one stock per product, but locations.map names "
                          f"{len(codes)} codes ({', '.join(sorted(codes))}): map every location to one code")


__all__ = ["MagentoConnector", "from_context"]
