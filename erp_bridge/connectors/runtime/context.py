"""What a connector factory is given: typed, the same for ``serve``, ``worker`` and ``config check``."""
from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...mapping.lookups import LookupTable
from ...mapping.schema import SystemMapping
from . import auth as auth_strategies
from .classify import Action, VendorMessage, VendorWait
from .inbox import Inbox
from .ledger import Ledger
from .pacing import Pacer
from .sender import Sender
from .tokens import StoredRefreshToken


@dataclass(frozen=True)
class ConnectorContext:
    mapping: SystemMapping
    #: secret name -> value; raises ConfigError naming how to set a missing one
    secret: Callable[[str], str]
    #: the mapping set's item tables by system name
    lookups: Mapping[str, LookupTable] = field(default_factory=dict)
    #: the queue's storage URL: connector ledgers live there, so they move with the queue
    storage_url: str = "sqlite:///var/queue.sqlite3"

    @property
    def system(self) -> str:
        return self.mapping.system

    @property
    def table(self) -> LookupTable | None:
        return self.lookups.get(self.mapping.system)

    def sender(self, *, message: VendorMessage | None = None, auth: auth_strategies.Strategy | None = None,
               on_status_defaults: Mapping[str, Action] | None = None, realm: str | None = None,
               transient_token_errors: Collection[str] = (), wait: VendorWait | None = None,
               pacer: Pacer | None = None, renew_on: Collection[int] = (401,),
               throttled_on: Collection[int] = (429,)) -> Sender:
        """The runtime's sender for this mapping: its timeout, auth, headers and ``on_status``
        (a connector's defaults first, so the integrator's file wins); ``transient_token_errors``:
        the vendor's token-endpoint errors that mean "wait", not "wrong credentials"; ``pacer``: waits
        before each request so the vendor's rate limit is not hit (runtime/pacing.py); ``renew_on``:
        the statuses after which the credential is renewed once and the request sent again;
        ``throttled_on``: the statuses that say "over the rate limit or quota" (a pause, no attempt)."""
        conn = self.mapping.connection
        strategy = auth or auth_strategies.build(conn.auth, self.secret, timeout_s=float(conn.timeout_s), realm=realm,
                                                 transient_token_errors=transient_token_errors)
        names = ", ".join(conn.auth.secrets.values())
        return Sender(self.system, timeout_s=float(conn.timeout_s), auth=strategy,
                      on_status={**(on_status_defaults or {}), **self.mapping.writes.on_status},
                      message=message, headers=conn.headers, secret_names=f"secrets {names}" if names else "",
                      wait=wait, pacer=pacer, renew_on=renew_on, throttled_on=throttled_on)

    def rotating_refresh_token(self, strategy: auth_strategies.Strategy) -> auth_strategies.Strategy:
        """For a token endpoint that rotates refresh tokens: keep the newest in the queue's storage
        (runtime/tokens.py), so a restart or another worker logs in with it."""
        if isinstance(strategy, auth_strategies.OAuth2) and self.mapping.connection.auth.kind == "oauth2_refresh_token":
            configured = self.secret(self.mapping.connection.auth.secrets["refresh_token"])
            strategy.store = StoredRefreshToken(self.inbox(), configured)
        return strategy

    def auth(self, **options: Any) -> auth_strategies.Strategy:
        """The mapping's auth strategy, as ``sender`` would build it (to wrap or adjust it first)."""
        conn = self.mapping.connection
        return auth_strategies.build(conn.auth, self.secret, timeout_s=float(conn.timeout_s), **options)

    def ledger(self, clock: Callable[[], float] = time.time) -> Ledger:
        return Ledger(self.storage_url, self.system, clock=clock)

    def inbox(self, clock: Callable[[], float] = time.time) -> Inbox:
        return Inbox(self.storage_url, self.system, clock=clock)
