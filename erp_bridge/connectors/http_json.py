"""``http_json``: a generic connector for a custom JSON endpoint.

Each item is one ``POST {base_url}/{availability|stock-changes|moves}`` with the item as a JSON
object (quantities as decimal strings) and ``Idempotency-Key: <the queue entry's key>``, so the
endpoint can drop a redelivery. Every request has a (connect, read) timeout.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping, Sequence

import requests

from ..domain import Count, Decrement, Increment, StockMove
from ..errors import ConfigError, RejectedError, RetryableError
from ..errors import NotAttempted
from .base import Capability, Delivered, Figure, Outcome
from .http import ThreadSessions
from .registry import secret_value

EXCERPT_CHARS = 200
CONNECT_TIMEOUT_S = 3.05
#: when the target did not say how long to wait, unsent items come back after this long
UNSENT_DELAY_S = 1.0


def retry_after_s(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now())
    except (TypeError, ValueError, IndexError):
        return None


def classify(response: requests.Response, path: str, redact: Sequence[str] = ()) -> Outcome:
    """The one place a response becomes an outcome. ``redact``: values (credentials) an error
    body might echo back, which must not reach the dead letters or the logs."""
    status = response.status_code
    if 200 <= status < 300:
        return Delivered()
    if status == 409:  # the endpoint already has this Idempotency-Key
        return Delivered("duplicate")
    if status in (429, 503):
        return RetryableError(f"HTTP {status} from {path}", after=retry_after_s(response.headers.get("Retry-After")))
    if status >= 500:
        return RetryableError(f"HTTP {status} from {path}: {_excerpt(response, redact)}")
    return RejectedError(f"HTTP {status} from {path}: {_excerpt(response, redact)}")


def classify_exception(exc: requests.RequestException, path: str) -> RetryableError:
    kind = "timed out" if isinstance(exc, requests.Timeout) else "failed"
    # the exception text can carry the full URL; name the path and the error type only
    return RetryableError(f"POST {path} {kind}: {type(exc).__name__}")


def _excerpt(response: requests.Response, redact: Sequence[str]) -> str:
    text = response.text[:EXCERPT_CHARS * 4]
    for value in redact:
        text = text.replace(value, "***")
    text = " ".join(text.split())
    return text[:EXCERPT_CHARS] or "(empty body)"


class HttpJsonConnector:
    capabilities = frozenset({Capability.PUSH_AVAILABILITY, Capability.APPLY_STOCK_CHANGES,
                              Capability.POST_MOVES})

    def __init__(self, name: str, base_url: str, *, timeout_s: float = 10.0,
                 auth_header: tuple[str, str] | None = None, headers: Mapping[str, str] | None = None,
                 codes: Callable[[str, str], dict[str, str]] | None = None):
        """``codes(item, location)``: the endpoint's own ids for them (``item_code``,
        ``location_code``), added to every body next to the internal ones."""
        self.name = name
        self._codes = codes or (lambda item, location: {})
        self._base_url = base_url.rstrip("/")
        self._timeout = (min(CONNECT_TIMEOUT_S, timeout_s), timeout_s)
        self._headers = {**(headers or {}), **(dict([auth_header]) if auth_header else {})}
        self._redact = _secret_parts(auth_header[1]) if auth_header else ()
        self._sessions = ThreadSessions()

    def push_availability(self, figures: Sequence[Figure]) -> list[Outcome]:
        return self._post_each("availability", [(f.idempotency_key, self._coded(_figure_body(f))) for f in figures])

    def apply_stock_changes(self, changes: Sequence[Decrement | Increment | Count]) -> list[Outcome]:
        return self._post_each("stock-changes", [(c.idempotency_key, self._coded(c.model_dump(mode="json")))
                                                 for c in changes])

    def post_moves(self, moves: Sequence[StockMove]) -> list[Outcome]:
        return self._post_each("moves", [(m.idempotency_key, self._coded(m.model_dump(mode="json"))) for m in moves])

    def _coded(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, **self._codes(body["item"], body["location"])}

    def close(self) -> None:
        self._sessions.close()

    def _post_each(self, path: str, items: list[tuple[str, dict[str, Any]]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for key, body in items:
            outcome = self._post(path, key, body)
            outcomes.append(outcome)
            if isinstance(outcome, RetryableError):
                # down, overloaded or asking us to wait: the rest of the batch would fare the
                # same, and sending it anyway would hold the lease through N more timeouts
                return outcomes + [NotAttempted(outcome, after=outcome.after or UNSENT_DELAY_S)] * (
                    len(items) - len(outcomes))
        return outcomes

    def _post(self, path: str, key: str, body: dict[str, Any]) -> Outcome:
        try:
            response = self._sessions.get().post(f"{self._base_url}/{path}", json=body, timeout=self._timeout,
                                            headers={**self._headers, "Idempotency-Key": key})
        except requests.RequestException as exc:
            return classify_exception(exc, path)
        with response:
            return classify(response, path, self._redact)


def _secret_parts(value: str) -> tuple[str, ...]:
    """The header value and the credential alone (without "Bearer "), longest first."""
    return tuple(v for v in dict.fromkeys([value, *value.split()[-1:]]) if v)


def _figure_body(figure: Figure) -> dict[str, Any]:
    body = asdict(figure)
    body["quantity"] = str(figure.quantity)
    body["previous"] = None if figure.previous is None else str(figure.previous)
    return body


def _auth_header(auth: Any, secret: Callable[[str], str]) -> tuple[str, str] | None:
    kind = getattr(auth, "kind", "none") if auth is not None else "none"
    if kind == "none":
        return None
    if kind not in ("bearer", "header"):
        raise ConfigError(f"http_json supports auth kinds none, bearer and header, not {kind!r}")
    name = auth.secrets.get("token")
    if not name:
        raise ConfigError(f"{kind} auth needs a secret name for 'token'")
    prefix = auth.prefix if auth.prefix is not None else ("Bearer " if kind == "bearer" else "")
    return getattr(auth, "header", "Authorization"), f"{prefix}{secret(name)}"


def from_mapping(system_mapping: Any, secrets: Any, lookups: Any = None) -> HttpJsonConnector:
    """Factory for the registry: ``system_mapping`` needs ``.system`` and ``.connection``
    (``base_url``, ``timeout_s``, optional ``auth`` and ``headers``)."""
    conn = system_mapping.connection
    return HttpJsonConnector(
        system_mapping.system, str(conn.base_url), timeout_s=float(conn.timeout_s),
        auth_header=_auth_header(getattr(conn, "auth", None), lambda n: secret_value(secrets, n)),
        headers=getattr(conn, "headers", None), codes=_codes_of(system_mapping, lookups))


def _codes_of(mapping: Any, lookups: Any) -> Callable[[str, str], dict[str, str]] | None:
    """The mapping's item rule and location map, when it has them (plain test objects may not)."""
    if not hasattr(mapping, "location_entry"):
        return None
    from ..mapping.compile import UnmappedError
    from ..mapping.engine import item_code

    table = (lookups or {}).get(mapping.system)

    def codes(item: str, location: str) -> dict[str, str]:
        entry = mapping.location_entry(location)
        out = {"location_code": entry.code} if entry else {}
        try:
            out["item_code"] = item_code(mapping, table, item)
        except UnmappedError:
            pass  # the internal SKU is still in the body; the endpoint decides what it does with it
        return out

    return codes
