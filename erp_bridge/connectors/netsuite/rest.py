"""NetSuite over the REST record API (``.../services/rest/record/v1``): a mirror, and channel sales
applied as adjustments, each upserted with ``PUT /<record>/eid:<external id>`` (OAuth 1.0a TBA is
the runtime's ``oauth1_tba``).

A replayed upsert must not add the lines again: REST merges a sublist sent in a PUT/PATCH into the
record's lines unless the request says ``replace=<sublist>`` (Oracle, "Working with Sublists"), so
a retried adjustment would double its quantity. ``check_mapping`` refuses a request that sends a
sublist (``{<name>: {items: [...]}}``) without naming it in ``query.replace``. The external id in
the URL and the body is ids.external_id(event key): NetSuite takes letters, digits, ``_``, ``-``.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import requests

from ...domain import Count, Decrement, Delivered, Increment, Result, StockMove
from ...errors import ConfigError, MappingError, RejectedError
from ...mapping.engine import HttpRequest, UnmappedError, build_requests
from ...mapping.lookups import LookupTable
from ...mapping.schema import SystemMapping
from ..base import Capability
from ..runtime.batch import until_down
from ..runtime.classify import json_or_none
from ..runtime.sender import Reply, Sender
from .ids import external_id

EID_SLOT = "/eid:{key}"


def check_mapping(mapping: SystemMapping) -> None:
    for name, spec in mapping.requests.items():
        where = f"{mapping.system}: requests.{name}"
        if spec.method != "PUT" or not spec.path.endswith(EID_SLOT):
            raise ConfigError(f"{where}: the REST record API upserts by external id only with "
                              f"method: PUT and a path ending in {EID_SLOT} (e.g. /inventoryadjustment{EID_SLOT})")
        replaced = set()
        if "replace" in spec.query and spec.query["replace"].kind == "const":
            replaced = {s.strip() for s in str(spec.query["replace"].const).split(",")}
        for sublist in sublists(spec.body or {}):
            if sublist not in replaced:
                raise ConfigError(f"{where}: body.{sublist} is a sublist: add query: {{replace: {sublist}}}, "
                                  "else every replayed upsert appends its lines again and doubles the quantity")


def rest_message(response: requests.Response) -> str | None:
    """``CODE: detail`` per entry of NetSuite's REST error body (``o:errorDetails``), or None."""
    body = json_or_none(response)
    details = body.get("o:errorDetails") if isinstance(body, dict) else None
    if not isinstance(details, list) or not details:
        return None
    return "; ".join(f"{d.get('o:errorCode', '?')}: {d.get('detail', '')}" for d in details if isinstance(d, dict))


def sublists(body: dict) -> list[str]:
    """Top-level body keys that are REST sublists: an object with an ``items`` list."""
    return [key for key, node in body.items()
            if node.kind == "object" and "items" in (node.object_ or {})]


class NetSuiteRestConnector:
    def __init__(self, mapping: SystemMapping, sender: Sender, lookups: Mapping[str, LookupTable] | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        check_mapping(mapping)
        if "system_of_record" in mapping.roles:
            raise ConfigError(f"{mapping.system}: as a system of record NetSuite is read through SOAP: set "
                              "connection.base_url to https://<account>.suitetalk.api.netsuite.com/services/"
                              "NetSuitePort_2023_2 (docs/connectors/netsuite.md)")
        self.name, self.mapping, self.sender, self._lookups, self._now = mapping.system, mapping, sender, lookups, now
        self.capabilities = frozenset({Capability.POST_MOVES} if "mirror" in mapping.roles else ())

    def post_moves(self, moves: Sequence[StockMove]) -> list[Result]:
        return until_down(list(moves), self._upsert)

    def apply_stock_changes(self, changes: Sequence[Decrement | Increment | Count]) -> list[Result]:
        return until_down(list(changes), self._upsert)

    def request(self, event: StockMove | Decrement | Increment) -> HttpRequest:
        """The request the engine builds, with the external id NetSuite accepts in URL and body."""
        built = build_requests(event, self.mapping, self._lookups, now=self._now(), new_id=lambda: str(uuid.uuid4()))[0]
        return rest_request(built, event.idempotency_key)

    def _upsert(self, event: StockMove | Decrement | Increment | Count) -> Result:
        if isinstance(event, Count):
            return RejectedError(f"{self.name} takes decrements and increments, not absolute counts")
        try:
            request = self.request(event)
        except UnmappedError as exc:
            return RejectedError(f"cannot map to {self.name}: {exc}")
        except MappingError as exc:
            return exc
        reply = self.sender.send(request)
        return Delivered(f"upserted (HTTP {reply.status})") if isinstance(reply, Reply) else reply

    def close(self) -> None:
        self.sender.close()


def rest_request(built: HttpRequest, key: str) -> HttpRequest:
    path, _, query = built.url.partition("?")
    eid = external_id(key)
    url = f"{path.rsplit('/eid:', 1)[0]}/eid:{eid}" + (f"?{query}" if query else "")
    body = {**built.body, "externalId": eid} if isinstance(built.body, dict) else built.body
    return HttpRequest(built.method, url, built.headers, body, built.key, built.keys, built.name)
