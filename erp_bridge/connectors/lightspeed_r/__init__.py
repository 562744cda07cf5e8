"""Lightspeed Retail (R-Series): a POS channel. Quantity on hand per shop out, completed sales in
by polling. See docs/connectors/lightspeed_r.md."""
from __future__ import annotations

import re
import threading

from ...dispatch.ratelimit import Limits
from ...errors import ConfigError
from ...mapping.binder import Binder
from ..runtime.context import ConnectorContext
from ..runtime.pacing import LeakyBucket, SharedLeakyBucket
from .connector import LightspeedRConnector, lightspeed_message

AUTH_KINDS = ("oauth2_refresh_token", "bearer")
ACCOUNT_URL = re.compile(r"/API/V3/Account/\d+/?$")
#: documented defaults until the first answer states the account's own (vendor-apis.md §9: a
#: bucket of 60 draining 1 per second; a read costs 1, a write 10)
BUCKET_SIZE, DRIP_PER_S, READ_COST, WRITE_COST = 60.0, 1.0, 1.0, 10.0
LEVEL_HEADER, DRIP_HEADER, COST_HEADER = "X-LS-API-Bucket-Level", "X-LS-API-Drip-Rate", "X-LS-API-Request-Cost"
_buckets: dict[str, LeakyBucket] = {}
_lock = threading.Lock()


def bucket(account_url: str) -> LeakyBucket:
    """The pacer: never let a request overflow the account's bucket (one per account in this process)."""
    with _lock:
        return _buckets.setdefault(account_url, LeakyBucket(
            BUCKET_SIZE, DRIP_PER_S, lambda method: READ_COST if method == "GET" else WRITE_COST,
            level_header=LEVEL_HEADER, drip_header=DRIP_HEADER, cost_header=COST_HEADER))


def pacer(base_url: str, limits: Limits) -> SharedLeakyBucket:
    """The account's bucket for every process on the storage together (PostgreSQL: one bucket row
    per account), each process also keeping its own, corrected from the answers' headers."""
    account = base_url.rstrip("/")
    return SharedLeakyBucket.named(limits, f"lightspeed_r:{account}", bucket(account))


def from_context(ctx: ConnectorContext) -> LightspeedRConnector:
    m = ctx.mapping
    if m.connection.auth.kind not in AUTH_KINDS:
        raise ConfigError(f"{m.system}: Lightspeed R-Series takes auth kind oauth2_refresh_token (token_url "
                          f"https://cloud.lightspeedapp.com/auth/oauth/token) or bearer, not {m.connection.auth.kind}")
    if not ACCOUNT_URL.search(str(m.connection.base_url)):
        raise ConfigError(f"{m.system}: connection.base_url must end with /API/V3/Account/<accountID> "
                          f"(GET https://api.lightspeedapp.com/API/V3/Account.json names the account id)")
    if m.items.lookup is not None and ctx.table is None:
        raise ConfigError(f"{m.system}: items.lookup names {m.items.lookup.file} but the connector got no lookup tables")
    auth = ctx.rotating_refresh_token(ctx.auth())  # Lightspeed's refresh tokens are single-use
    inbox = ctx.inbox()
    sender = ctx.sender(message=lightspeed_message, auth=auth, pacer=pacer(str(m.connection.base_url), inbox.limits()))
    return LightspeedRConnector(m, sender, inbox, binder=Binder(m, ctx.table))


__all__ = ["LightspeedRConnector", "from_context"]
