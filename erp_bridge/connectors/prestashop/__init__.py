"""PrestaShop (seed 004): a channel on the webservice's XML. Availability out as the full
``stock_available``; sales in from orders polled by ``date_upd``. See docs/connectors/prestashop.md."""
from __future__ import annotations

from ...errors import ConfigError
from ...mapping.binder import Binder
from ...mapping.schema import SystemMapping
from ..runtime.context import ConnectorContext
from .connector import PrestaShopConnector
from .webservice import prestashop_message


def from_context(ctx: ConnectorContext) -> PrestaShopConnector:
    """Registry factory: the sender (the webservice key as the Basic username, PrestaShop's error
    body), the inbox in the queue's storage (the poller's cursor and seen lines), the SKU table."""
    m = ctx.mapping
    if m.connection.auth.kind != "basic" or "password" in m.connection.auth.secrets:
        raise ConfigError(f"{m.system}: PrestaShop takes auth kind basic with only secrets.username (the webservice "
                          "key, Advanced Parameters > Webservice); its password is empty")
    if m.items.lookup is not None and ctx.table is None:
        raise ConfigError(f"{m.system}: items.lookup names {m.items.lookup.file} but the connector got no "
                          "lookup tables")
    _check(m)
    return PrestaShopConnector(m, ctx.sender(message=prestashop_message), ctx.inbox(), Binder(m, ctx.table))


def _check(m: SystemMapping) -> None:
    shops = [e.code for e in m.locations.map if not e.code.isdigit()]
    if shops:
        raise ConfigError(f"{m.system}: locations.map codes are PrestaShop shop ids (1 for a single shop), "
                          f"not {', '.join(shops)}")
    polling = m.polling
    both = set(polling.sale_statuses or ()) & set(polling.restock_statuses or ()) if polling else set()
    if both:
        raise ConfigError(f"{m.system}: order state {', '.join(sorted(both))} is in both polling.sale_statuses "
                          "and polling.restock_statuses")
    odd = [s for s in (*(polling.sale_statuses or ()), *(polling.restock_statuses or ()))
           if not s.isdigit()] if polling else []
    if odd:
        raise ConfigError(f"{m.system}: polling statuses are PrestaShop order state ids (Orders > Statuses), "
                          f"not {', '.join(odd)}")


__all__ = ["PrestaShopConnector", "from_context"]
