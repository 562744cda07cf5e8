"""Amazon Selling Partner API (seed 004) as a channel: merchant-fulfilled quantities out through the
Listings Items API, sales in by polling the Orders API. See docs/connectors/amazon.md."""
from __future__ import annotations

from ...errors import ConfigError
from ...mapping.binder import Binder
from ...mapping.schema import SystemMapping
from ..runtime.context import ConnectorContext
from . import orders
from .connector import AmazonConnector
from .listings import Listings, amazon_message, seller_id

#: Login with Amazon: the refresh token the seller's authorisation gave, exchanged for 1-hour tokens
TOKEN_HEADER = "x-amz-access-token"
#: an expired or revoked access token is answered 403 (not 401): renew once, then send again
RENEW_ON = (401, 403)


def from_context(ctx: ConnectorContext) -> AmazonConnector:
    """Registry factory: the sender (LWA token in x-amz-access-token, Amazon's error envelope),
    the inbox in the queue's storage (the poller's cursor and seen ids), the marketplaces."""
    m = ctx.mapping
    _check_auth(m)
    for entry in m.locations.map:
        seller_id(m.system, entry)
    sender = ctx.sender(message=amazon_message, renew_on=RENEW_ON)
    base = str(m.connection.base_url)
    listings = Listings(m.system, base, sender, Binder(m, ctx.table))
    return AmazonConnector(m.system, base, sender, ctx.inbox(), listings, _rules(m),
                           [e.code for e in m.locations.map])


def _check_auth(m: SystemMapping) -> None:
    auth = m.connection.auth
    if auth.kind != "oauth2_refresh_token":
        raise ConfigError(f"{m.system}: Amazon takes auth kind oauth2_refresh_token (Login with Amazon), "
                          f"not {auth.kind}")
    if auth.header.lower() != TOKEN_HEADER or auth.prefix != "":
        raise ConfigError(f"{m.system}: set connection.auth.header: {TOKEN_HEADER} and prefix: \"\" (SP-API reads "
                          "the access token from that header, without 'Bearer ')")


def _rules(m: SystemMapping) -> orders.Rules:
    polling = m.polling
    sale = tuple(polling.sale_statuses) if polling and polling.sale_statuses else orders.SALE_STATUSES
    back = tuple(polling.restock_statuses) if polling and polling.restock_statuses else orders.RESTOCK_STATUSES
    for name, statuses in (("sale_statuses", sale), ("restock_statuses", back)):
        unknown = [s for s in statuses if s not in orders.STATUSES]
        if unknown:
            raise ConfigError(f"{m.system}: polling.{name} names {', '.join(unknown)}, not Amazon order statuses "
                              f"({', '.join(orders.STATUSES)})")
    if set(sale) & set(back):
        raise ConfigError(f"{m.system}: polling.sale_statuses and restock_statuses share "
                          f"{', '.join(sorted(set(sale) & set(back)))}")
    return orders.Rules(m.system, sale, back)


__all__ = ["AmazonConnector", "from_context"]
