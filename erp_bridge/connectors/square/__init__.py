"""Square (seed 001): a channel. Availability out as physical counts; sales in from Square's
inventory change history, nudged by verified webhooks. See docs/connectors/square.md."""
from __future__ import annotations

from ...errors import ConfigError
from ...mapping.binder import Binder
from ...mapping.schema import Webhooks
from ..runtime.context import ConnectorContext
from . import history
from .connector import SquareConnector, square_message

AUTH_KINDS = ("bearer", "oauth2_refresh_token")


def from_context(ctx: ConnectorContext) -> SquareConnector:
    """Registry factory: the sender (access token, Square-Version, Square's error envelope), the
    inbox in the queue's storage, the webhook signature key and the SKU table."""
    m = ctx.mapping
    if m.connection.auth.kind not in AUTH_KINDS:
        raise ConfigError(f"{m.system}: Square takes auth kind bearer (an access token) or oauth2_refresh_token, "
                          f"not {m.connection.auth.kind}")
    if not any(name.lower() == "square-version" for name in m.connection.headers):
        raise ConfigError(f"{m.system}: set connection.headers.Square-Version (the API version the mapping's "
                          f"bodies were written for, e.g. 2025-08-20)")
    if m.items.lookup is not None and ctx.table is None:
        raise ConfigError(f"{m.system}: items.lookup names {m.items.lookup.file} but the connector got no "
                          "lookup tables")
    _check_states(m.system, m.webhooks)
    if m.webhooks is not None and not m.webhooks.notification_url:
        raise ConfigError(f"{m.system}: set webhooks.notification_url to the URL exactly as registered in Square's "
                          f"webhook subscription (Square signs it with the body)")
    key = ctx.secret(m.webhooks.secret) if m.webhooks else None
    return SquareConnector(m, ctx.sender(message=square_message), ctx.inbox(), binder=Binder(m, ctx.table),
                           webhook_key=key)


def _check_states(system: str, hooks: Webhooks | None) -> None:
    for name in ("sale_statuses", "restock_statuses"):
        unknown = [s for s in (getattr(hooks, name, None) or []) if s not in history.STATES]
        if unknown:
            raise ConfigError(f"{system}: webhooks.{name} names {', '.join(unknown)}, not Square inventory states "
                              f"({', '.join(history.STATES)})")


__all__ = ["SquareConnector", "from_context"]
