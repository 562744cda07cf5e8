"""``GET /inventory-levels``: the inventory-levels query (seed 002, vendor-apis §10).

``inventoryItemIds`` (required; comma-separated and/or repeated), ``shipToCountry`` (ISO 3166-1
alpha-2), ``available`` (true: only levels above 0; false: only those at 0), ``updatedSince``
(ISO 8601 with a time zone; compared with updatedTime, when the figure was read from the
system of record). One level per item and location code; an id the mapping does not know has no
levels. The bearer token picks the client (each inventory_levels client names its own secret).

Pagination runs over the id list, as Digital River lists do: ``limit`` ids per page (default and
maximum ``pull.page_size``), ``startingAfter`` = the last id of the previous page, ``hasMore``
says whether ids remain. All of an item's locations are on the same page.

System of record unreachable and the cache stale: ``unreachable: reject`` reports those levels as
not available (0); ``accept`` answers 503 with Retry-After, since this protocol has no "unknown".
"""
from __future__ import annotations

import hmac
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..mapping.schema import COUNTRY_CODES
from ..sync.pull import Answer, combine, internals_by_code, sku_for

router = APIRouter(tags=["pull"])
PARAMS = ("inventoryItemIds", "shipToCountry", "available", "updatedSince", "limit", "startingAfter")


class BadQuery(Exception):
    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(e["message"] for e in errors))
        self.errors = errors


def _error(parameter: str, message: str) -> dict:
    return {"code": "invalid_parameter", "parameter": parameter, "message": message}


@router.get("/inventory-levels", responses={400: {}, 401: {}, 503: {}})
async def inventory_levels(request: Request, inventoryItemIds: list[str] | None = Query(None),  # noqa: B008 (FastAPI's idiom)
                           shipToCountry: str | None = None, available: str | None = None,
                           updatedSince: str | None = None, limit: str | None = None,
                           startingAfter: str | None = None) -> JSONResponse:
    from .pull import service_of

    mapping = authorised_client(request)
    try:
        query = parse_query(mapping.pull, dict(request.query_params.multi_items()),
                            request.query_params.getlist("inventoryItemIds"))
    except BadQuery as exc:
        return JSONResponse({"type": "bad_request", "errors": exc.errors}, status_code=400)
    runtime = request.app.state.runtime
    service, pull = service_of(request), mapping.pull
    page, codes, skus, keys = _page(runtime, mapping, query)
    readings = service.readings_now(keys, pull.fresh_s)  # from the cache, no thread
    if readings is None:
        readings = await run_in_threadpool(service.readings, keys, pull.fresh_s, pull.live_timeout_s)  # one read order
    return _levels(mapping, query, page, codes, skus, readings)


def authorised_client(request: Request):
    """The inventory_levels client whose token was presented; every token is compared."""
    from .pull import pull_clients

    clients = pull_clients(request, "inventory_levels")
    if not clients:
        raise HTTPException(404, "no inventory_levels pull client is configured")
    secrets = request.app.state.runtime.settings.secrets
    tokens = {n: secrets.get(m.pull.token_secret) for n, m in clients.items()}
    if not any(tokens.values()):
        raise HTTPException(503, "inventory levels are disabled: set the secret named by pull.token_secret")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    matched = [n for n, t in tokens.items() if t is not None and
               hmac.compare_digest(given.strip().encode(), t.get_secret_value().encode())]
    if scheme.lower() != "bearer" or not matched:
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
    return clients[matched[0]]


def parse_query(pull, params: dict[str, str], raw_ids: list[str]) -> dict:
    """Every problem at once, each naming its parameter."""
    errors: list[dict] = []
    ids = list(dict.fromkeys(i.strip() for raw in raw_ids for i in raw.split(",") if i.strip()))
    if not ids:
        errors.append(_error("inventoryItemIds", "inventoryItemIds is required (comma-separated ids)"))
    elif len(ids) > pull.max_ids:
        errors.append(_error("inventoryItemIds", f"too many inventoryItemIds: {len(ids)} (at most {pull.max_ids} "
                                                 f"per request; pages of limit ids come back with hasMore)"))
    query = {"ids": ids, "country": _country(params.get("shipToCountry"), errors),
             "available": _boolean(params.get("available"), errors),
             "since": _since(params.get("updatedSince"), errors),
             "limit": _limit(params.get("limit"), pull.page_size, errors)}
    query["start"] = _start(params.get("startingAfter"), ids, errors)
    if errors:
        raise BadQuery(errors)
    return query


def _country(value: str | None, errors: list) -> str | None:
    if value is None:
        return None
    if value.strip().upper() not in COUNTRY_CODES:
        errors.append(_error("shipToCountry", f"shipToCountry {value[:20]!r} is not an ISO 3166-1 alpha-2 "
                                              "country code (e.g. SE, DE, US)"))
        return None
    return value.strip().upper()


def _boolean(value: str | None, errors: list) -> bool | None:
    if value is None:
        return None
    if value.lower() not in ("true", "false"):
        errors.append(_error("available", "available must be true or false"))
        return None
    return value.lower() == "true"


def _since(value: str | None, errors: list) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        errors.append(_error("updatedSince", "updatedSince must be an ISO 8601 date-time with a time zone, "
                                             "e.g. 2021-01-12T06:55:14Z"))
        return None
    return parsed


def _limit(value: str | None, page_size: int, errors: list) -> int:
    if value is None:
        return page_size
    if not (value.isascii() and value.isdigit() and len(value) <= 9) or not 1 <= int(value) <= page_size:
        errors.append(_error("limit", f"limit must be a whole number from 1 to {page_size}"))
        return page_size
    return int(value)


def _start(value: str | None, ids: list[str], errors: list) -> int:
    if value is None:
        return 0
    if value not in ids:
        errors.append(_error("startingAfter", "startingAfter must be one of the inventoryItemIds "
                                              "(the last id of the previous page)"))
        return 0
    return ids.index(value) + 1


def _page(runtime, mapping, query: dict) -> tuple[list[str], dict[str, list[str]], dict[str, str | None], list]:
    """The page's ids, the location codes asked for, each id's SKU, and the keys to read."""
    page = query["ids"][query["start"]:query["start"] + query["limit"]]
    codes = _codes(mapping, query["country"])
    skus = {i: sku_for(mapping, runtime.mappings.lookups, i, {}) for i in page}
    keys = [(sku, loc) for sku in skus.values() if sku for locs in codes.values() for loc in locs]
    return page, codes, skus, keys


def _levels(mapping, query: dict, page: list[str], codes: dict[str, list[str]], skus: dict[str, str | None],
            readings: dict) -> JSONResponse:
    from .pull import freshness

    has_more = query["start"] + len(page) < len(query["ids"])
    answers = {(i, code): combine(mapping, [readings[(sku, loc)] for loc in locs])
               for i, sku in skus.items() if sku for code, locs in codes.items()}
    headers = freshness(answers.values())
    if mapping.pull.unreachable == "accept" and any(a.source == "unreachable" for a in answers.values()):
        body = {"type": "service_unavailable", "errors": [
            {"code": "availability_unconfirmed", "message": mapping.pull.messages.unconfirmed}]}
        return JSONResponse(body, status_code=503, headers={**headers, "Retry-After": "1"})
    data = [level for (i, code), a in answers.items() if (level := _level(mapping, i, code, a, query))]
    return JSONResponse({"data": data, "hasMore": has_more}, headers=headers)


def _codes(mapping, country: str | None) -> dict[str, list[str]]:
    """Location code -> internal locations, keeping the codes that ship to ``country``."""
    ships: dict[str, set[str]] = {}
    for entry in mapping.locations.map:
        ships.setdefault(entry.code, set()).update(entry.ship_to)
    return {code: locs for code, locs in internals_by_code(mapping).items()
            if country is None or country in ships[code]}


def _level(mapping, item_id: str, code: str, answer: Answer, query: dict) -> dict | None:
    if answer.source == "unknown":
        return None
    quantity = int(answer.quantity) if answer.quantity is not None else 0  # unreachable + reject: 0
    read_at = answer.read_at or datetime.now(UTC)
    if query["available"] is not None and (quantity > 0) != query["available"]:
        return None
    if query["since"] is not None and read_at < query["since"]:
        return None
    level = {"locationId": code, "inventoryItemId": item_id, "available": quantity > 0,
             "availableQuantity": quantity}
    if quantity <= 0 and answer.restock_at is not None:  # seed 002: only when not available
        level["availableTime"] = _iso(answer.restock_at)
    return {**level, "liveMode": mapping.pull.live_mode, "updatedTime": _iso(read_at)}


def _iso(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
