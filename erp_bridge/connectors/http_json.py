"""``http_json``: a generic connector for a custom JSON endpoint (docs/connectors/http_json.md).

Each item is one ``POST {base_url}/{availability|stock-changes|moves}`` with the item as a JSON
object (quantities as decimal strings) and ``Idempotency-Key: <the queue entry's key>``, so the
endpoint can drop a redelivery (a 409 means it already has it, unless ``writes.on_status`` says
otherwise). Sending, auth, classification and redaction are the runtime's.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from ..domain import Count, Decrement, Delivered, Figure, Increment, Result, StockMove
from ..mapping.binder import Binder
from .base import Capability
from .runtime.batch import until_down
from .runtime.context import ConnectorContext
from .runtime.sender import Reply, Sender

#: an endpoint that already has this Idempotency-Key answers 409
ON_STATUS_DEFAULTS = {"409": "ignore"}


class HttpJsonConnector:
    capabilities = frozenset({Capability.PUSH_AVAILABILITY, Capability.APPLY_STOCK_CHANGES,
                              Capability.POST_MOVES})

    def __init__(self, name: str, base_url: str, sender: Sender,
                 codes: Callable[[str, str], dict[str, str]] | None = None):
        """``codes(item, location)``: the endpoint's own ids for them (``item_code``,
        ``location_code``), added to every body next to the internal ones."""
        self.name, self._sender = name, sender
        self._codes = codes or (lambda item, location: {})
        self._base_url = base_url.rstrip("/")

    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        return self._post_each("availability", [(f.idempotency_key, _figure_body(f)) for f in figures])

    def apply_stock_changes(self, changes: Sequence[Decrement | Increment | Count]) -> list[Result]:
        return self._post_each("stock-changes", [(c.idempotency_key, c.model_dump(mode="json")) for c in changes])

    def post_moves(self, moves: Sequence[StockMove]) -> list[Result]:
        return self._post_each("moves", [(m.idempotency_key, m.model_dump(mode="json")) for m in moves])

    def close(self) -> None:
        self._sender.close()

    def _post_each(self, path: str, items: list[tuple[str, dict[str, Any]]]) -> list[Result]:
        def post(item: tuple[str, dict[str, Any]]) -> Result:
            key, body = item
            reply = self._sender.call("POST", f"{self._base_url}/{path}", what=f"POST {path}",
                                      body={**body, **self._codes(body["item"], body["location"])},
                                      headers={"Idempotency-Key": key})
            if not isinstance(reply, Reply):
                return reply
            return Delivered("duplicate" if reply.status == 409 else reply.detail)
        return until_down(items, post)


def _figure_body(figure: Figure) -> dict[str, Any]:
    body = asdict(figure)
    body["quantity"] = str(figure.quantity)
    body["previous"] = None if figure.previous is None else str(figure.previous)
    return body


def from_context(ctx: ConnectorContext) -> HttpJsonConnector:
    binder = Binder(ctx.mapping, ctx.table)
    return HttpJsonConnector(ctx.system, str(ctx.mapping.connection.base_url),
                             ctx.sender(on_status_defaults=ON_STATUS_DEFAULTS), codes=binder.codes)
