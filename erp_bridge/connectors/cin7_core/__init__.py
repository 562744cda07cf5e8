"""Cin7 Core (formerly DEAR Inventory): a channel. Available stock out by stock adjustment, sales in
by polling the sale list. See docs/connectors/cin7_core.md."""
from __future__ import annotations

import hashlib
import threading

from ...dispatch.ratelimit import Limits
from ...errors import ConfigError
from ...mapping.binder import Binder
from ..runtime.context import ConnectorContext
from ..runtime.pacing import LeakyBucket, SharedLeakyBucket
from .connector import RATE_LIMITED_STATUS, Cin7CoreConnector, cin7_message, cin7_wait

AUTH_HEADERS = ("api-auth-accountid", "api-auth-applicationkey")
#: 60 calls a minute per API application (the blueprint): one call every 60/58 s leaves room
#: for clock drift between the bridge and Cin7's minute
CALLS_PER_MINUTE = 58.0
_pacers: dict[str, LeakyBucket] = {}
_lock = threading.Lock()


def pacer(application: str, limits: Limits) -> SharedLeakyBucket:
    """One pace per API application (the limit is Cin7's per application): one bucket for every
    process on PostgreSQL (a row named by a hash of it), each process also keeping its own."""
    key = hashlib.sha256(application.encode()).hexdigest()  # not the key itself, even in memory
    with _lock:
        own = _pacers.setdefault(key, LeakyBucket(1.0, CALLS_PER_MINUTE / 60.0))
    return SharedLeakyBucket.named(limits, f"cin7_core:{key[:32]}", own)


def from_context(ctx: ConnectorContext) -> Cin7CoreConnector:
    m = ctx.mapping
    auth = m.connection.auth
    if auth.kind != "headers" or sorted(h.lower() for h in auth.secrets) != sorted(AUTH_HEADERS):
        raise ConfigError(f"{m.system}: Cin7 Core takes auth kind headers with secrets for exactly "
                          f"{' and '.join(AUTH_HEADERS)} (the account id and API application key from "
                          f"Cin7 Core > Integrations > API)")
    if m.items.lookup is not None and ctx.table is None:
        raise ConfigError(f"{m.system}: items.lookup names {m.items.lookup.file} but the connector got no lookup tables")
    application = next(ctx.secret(name) for header, name in auth.secrets.items() if header.lower() == AUTH_HEADERS[1])
    inbox = ctx.inbox()
    sender = ctx.sender(message=cin7_message, wait=cin7_wait, pacer=pacer(application, inbox.limits()),
                        throttled_on=(429, RATE_LIMITED_STATUS))
    return Cin7CoreConnector(m, sender, inbox, binder=Binder(m, ctx.table))


__all__ = ["Cin7CoreConnector", "from_context"]
