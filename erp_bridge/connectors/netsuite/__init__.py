"""Oracle NetSuite: SuiteTalk SOAP through zeep (primary: mirror and system of record) or the REST
record API (mirror). Facts and sources: ../shared/reference/vendor-apis.md §2; integrator guide:
docs/connectors/netsuite.md.

The mapping chooses the protocol by the shape of ``connection.base_url`` (no option bag):
- ``https://<account>.suitetalk.api.netsuite.com/services/NetSuitePort_2023_2``: SOAP; requests
  name the record type in ``path`` (``/InventoryAdjustment``) and write SOAP field names; auth
  ``oauth1_tba`` becomes the envelope's TokenPassport; ``connection.wsdl`` (default: the account's
  WSDL URL of that version) is loaded once and cached on disk next to the queue;
- ``https://<account>.suitetalk.api.netsuite.com/services/rest/record/v1``: REST; requests are
  ``PUT /<record>/eid:{key}`` with ``query: {replace: <sublist>}``; auth ``oauth1_tba`` signs them.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from lxml import etree

from ...errors import ConfigError
from ...mapping.engine import build_requests
from ...mapping.lookups import LookupTable
from ...mapping.schema import SystemMapping
from ...mapping.wire import mask, to_json
from ..runtime.context import ConnectorContext
from ..runtime.ledger import sqlite_path
from .connector import NetSuiteSoapConnector, record_type
from .ids import external_id
from .passport import TbaCredentials, TbaPassport, masked_header
from .rest import NetSuiteRestConnector, rest_message, rest_request
from .soap import Codec, default_wsdl, load_client

__all__ = ["NetSuiteRestConnector", "NetSuiteSoapConnector", "describe", "from_context", "protocol"]
SOAP_MARK, REST_MARK = "/services/NetSuitePort_", "/services/rest/record/v1"
#: the WSDL cache when the queue is not a SQLite file (its folder), and for previews
DEFAULT_CACHE = Path("var/cache")


def protocol(mapping: SystemMapping) -> Literal["soap", "rest"]:
    url = str(mapping.connection.base_url)
    if SOAP_MARK in url:
        return "soap"
    if url.endswith(REST_MARK):
        return "rest"
    raise ConfigError(f"{mapping.system}: connection.base_url must be the SOAP endpoint "
                      f"https://<account>.suitetalk.api.netsuite.com{SOAP_MARK}2023_2 or the REST record API "
                      f"https://<account>.suitetalk.api.netsuite.com{REST_MARK}")


def codec_for(mapping: SystemMapping, cache_dir: Path | None) -> Codec:
    conn = mapping.connection
    location = conn.wsdl or default_wsdl(str(conn.base_url))
    return Codec(load_client(location, cache_dir, float(conn.timeout_s)))


def cache_dir(storage_url: str) -> Path:
    """Next to the SQLite queue (``<data_dir>/cache``); DEFAULT_CACHE with PostgreSQL."""
    try:
        return sqlite_path(storage_url).parent / "cache"
    except ConfigError:
        return DEFAULT_CACHE


def from_context(ctx: ConnectorContext, *,
                 now: Callable[[], datetime] | None = None) -> NetSuiteSoapConnector | NetSuiteRestConnector:
    mapping = ctx.mapping
    if mapping.connection.auth.kind != "oauth1_tba":
        raise ConfigError(f"{mapping.system}: NetSuite takes auth kind oauth1_tba (token-based authentication)")
    if mapping.writes.idempotency.strategy != "external_id":
        raise ConfigError(f"{mapping.system}: set writes.idempotency to {{strategy: external_id, field: externalId}} "
                          "(every record is upserted by its external id)")
    clock = now or (lambda: datetime.now(UTC))
    if protocol(mapping) == "rest":
        return NetSuiteRestConnector(mapping, ctx.sender(message=rest_message), ctx.lookups, now=clock)
    strategy = TbaPassport(TbaCredentials.from_secrets(mapping.connection.auth.secrets, ctx.secret))
    codec = codec_for(mapping, cache_dir(ctx.storage_url))
    return NetSuiteSoapConnector(mapping, ctx.sender(auth=strategy), codec, strategy, ctx.lookups, now=clock)


def describe(mapping: SystemMapping, lookups: Mapping[str, LookupTable] | None, events: Sequence[Any], *,
             now: datetime, new_id: Callable[[], str] = lambda: str(uuid.uuid4())) -> str:
    """What ``mappings preview`` shows: the exact request per event, credentials as ``***``."""
    blocks = []
    for event in events:
        built = build_requests(event, mapping, lookups, now=now, new_id=new_id)[0]
        key = event.idempotency_key
        if protocol(mapping) == "rest":
            request = rest_request(built, key)
            text = f"{request.method} {mask(request.url)}\n\n{mask(to_json(request.body, indent=2))}"
        else:
            text = _soap_text(mapping, record_type(mapping, built.name), built.body or {}, key)
        blocks.append(f"# {mapping.system} {built.name}, key {key}\n{text}")
    return "\n\n".join(blocks) + "\n"


def _soap_text(mapping: SystemMapping, type_name: str, body: dict, key: str) -> str:
    codec = codec_for(mapping, DEFAULT_CACHE)
    try:
        record = codec.record(type_name, body, external_id(key))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{mapping.system}: the request body does not fit {type_name}: {exc}") from None
    envelope = codec.envelope("upsertList", {"tokenPassport": masked_header()}, record=[record])
    pretty = etree.tostring(etree.fromstring(envelope.content), pretty_print=True, encoding="unicode")
    return (f"POST {mapping.connection.base_url}\nContent-Type: text/xml; charset=utf-8\n"
            f"SOAPAction: upsertList\n\n{pretty}")
