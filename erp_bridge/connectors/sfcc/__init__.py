"""Salesforce B2C Commerce (seed 004): a channel. Availability out to Omnichannel Inventory, sales in
from the SCAPI orders of each site, polled. See docs/connectors/sfcc.md."""
from __future__ import annotations

import re

from ...errors import ConfigError
from ...mapping.binder import Binder
from ...mapping.schema import SystemMapping
from ..runtime.auth import OAuth2
from ..runtime.context import ConnectorContext
from .connector import SfccConnector, sfcc_message, sites_of

#: Account Manager's scope naming the instance: SALESFORCE_COMMERCE_API:<realm>_<instance>
TENANT_SCOPE = re.compile(r"(?:^|\s)SALESFORCE_COMMERCE_API:([a-z0-9]{4}_[a-z0-9]{3})(?:\s|$)", re.IGNORECASE)
ORDER_SCOPES = ("sfcc.orders", "sfcc.orders.rw")


def from_context(ctx: ConnectorContext) -> SfccConnector:
    """Registry factory: Account Manager client credentials (HTTP Basic, as Account Manager
    documents), SCAPI's error envelope, the poll windows in the queue's storage."""
    m = ctx.mapping
    auth = m.connection.auth
    if auth.kind != "oauth2_client_credentials" or auth.token_url is None:
        raise ConfigError(f"{m.system}: SFCC takes auth kind oauth2_client_credentials with token_url "
                          f"https://account.demandware.com/dwsso/oauth2/access_token (an Account Manager API client)")
    tenant = _tenant(m)
    if m.items.lookup is not None and ctx.table is None:
        raise ConfigError(f"{m.system}: items.lookup names {m.items.lookup.file} but the connector got no lookup tables")
    names = auth.secrets
    if "client_id" not in names or "client_secret" not in names:
        raise ConfigError(f"{m.system}: connection.auth.secrets needs client_id and client_secret (the API client's "
                          f"id and password from Account Manager)")
    strategy = OAuth2(auth.token_url, ctx.secret(names["client_id"]), ctx.secret(names["client_secret"]),
                      scope=auth.scope, timeout_s=float(m.connection.timeout_s), client_auth="basic",
                      names=", ".join(names.values()))
    return SfccConnector(m, ctx.sender(message=sfcc_message, auth=strategy), ctx.inbox(),
                         binder=Binder(m, ctx.table), organization=f"f_ecom_{tenant.lower()}")


def _tenant(m: SystemMapping) -> str:
    scope = m.connection.auth.scope or ""
    found = TENANT_SCOPE.search(scope)
    if found is None:
        raise ConfigError(f"{m.system}: connection.auth.scope must name the instance as SALESFORCE_COMMERCE_API:"
                          f"<realm>_<instance> (e.g. SALESFORCE_COMMERCE_API:zzxy_prd), then the scopes it needs")
    if sites_of(m) and not any(s in scope.split() for s in ORDER_SCOPES):
        raise ConfigError(f"{m.system}: locations name a site (attrs.site), so orders are polled: add sfcc.orders to "
                          f"connection.auth.scope and to the API client in Account Manager")
    return found.group(1)


__all__ = ["SfccConnector", "from_context"]
