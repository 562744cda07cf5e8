"""The one place an HTTP answer becomes a result, for every connector on the runtime.

The mapping's ``writes.on_status`` says what an error status means (retry, fail, ignore), so an
integrator can teach the bridge a vendor's quirks without code; ``Retry-After`` (seconds or an
HTTP date) is honoured on every retry. A system contributes only how to read its own error body
(``VendorMessage``). Every excerpt is redacted of the connector's secret values before it can
reach a log line, a stored attempt or a dead letter.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from ...domain import Delivered
from ...errors import BridgeError, RejectedError, RetryableError, Throttled
from ...logs import Redactor as Mask

EXCERPT_CHARS = 200
CONNECT_TIMEOUT_S = 3.05
#: when the target did not say how long to wait, unsent items come back after this long
UNSENT_DELAY_S = 1.0
Action = str  # "retry" | "fail" | "ignore" (mapping.schema.Writes.on_status values)
#: the system's own error text from an error response, or None when the body is not its envelope
VendorMessage = Callable[[requests.Response], "str | None"]
#: seconds to wait from a system's own rate-limit headers, when it sends no Retry-After
#: (BigCommerce: X-Rate-Limit-Time-Reset-Ms), or None when they say nothing
VendorWait = Callable[[requests.Response], "float | None"]


def with_status(error: BridgeError, status: int) -> BridgeError:
    error.status = status
    return error


@dataclass(frozen=True)
class Redactor:
    """Masks every secret value in text bound for humans (an error excerpt, a stored attempt):
    whole values only, also JSON-escaped, as the log formatter does (logs.Redactor)."""

    values: tuple[str, ...] = ()
    _mask: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_mask", Mask(self.values))

    @classmethod
    def of(cls, values: Sequence[str]) -> Redactor:
        return cls(tuple(sorted({v for v in values if v}, key=len, reverse=True)))

    def __call__(self, text: str) -> str:
        return self._mask(text) or ""

    def excerpt(self, text: str) -> str:
        return " ".join(self(text[:EXCERPT_CHARS * 4]).split())[:EXCERPT_CHARS] or "(empty body)"


def retry_after_s(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to str.isdigit, not to float()
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now())
    except (TypeError, ValueError, IndexError):
        return None


def action_for(status: int, on_status: Mapping[str, Action]) -> Action:
    """retry / fail / ignore: the exact status, then its class (``4xx``), then the defaults."""
    for key in (str(status), f"{str(status)[0]}xx"):
        if key in on_status:
            return on_status[key]
    return "retry" if status == 429 or status >= 500 else "fail"


def classify_response(response: requests.Response, what: str, on_status: Mapping[str, Action],
                      redact: Redactor, message: VendorMessage | None = None,
                      wait: VendorWait | None = None, throttled_on: Collection[int] = (429,)) -> Delivered | BridgeError:
    """``throttled_on``: the statuses by which the system says "over your rate limit or quota"
    (429; Cin7 Core's 503): retried, they are ``Throttled``, which pauses the target uncounted."""
    status = response.status_code
    if 200 <= status < 300:
        return Delivered()
    action = action_for(status, on_status)
    if action == "ignore":
        return Delivered(f"ignored HTTP {status} (writes.on_status)")
    text = (message(response) if message else None) or response.text
    reason = f"HTTP {status} from {what}: {redact.excerpt(text)}"
    if action == "retry":
        after = retry_after_s(response.headers.get("Retry-After"))
        if after is None and wait is not None:
            after = wait(response)
        kind = Throttled if status in throttled_on else RetryableError
        return with_status(kind(reason, after=after), status)
    return with_status(RejectedError(reason), status)


def transport_error(exc: requests.RequestException, what: str) -> RetryableError:
    """A failure before any answer. The exception text can carry the full URL (ids, filters,
    sometimes a token in a query): name the error type only."""
    kind = "timed out" if isinstance(exc, requests.Timeout) else "failed"
    error = RetryableError(f"{what} {kind}: {type(exc).__name__}")
    error.never_sent = never_sent(exc)
    return error


def never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the target (refused, or no connection in time)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def vendor_decimal(value: object) -> Decimal:
    """A vendor's number (a JSON number, a decimal string, empty or missing) as Decimal; a value it
    cannot read counts as 0: never show stock that is not there."""
    try:
        return Decimal(str(value if value not in (None, "") else 0))
    except InvalidOperation:
        return Decimal(0)


def finite_decimal(value: object) -> Decimal | None:
    """A vendor's quantity as a finite Decimal; None when it is not one (NaN, Infinity, not a
    number): the caller skips what carries it and says why, rather than guess a figure."""
    try:
        quantity = Decimal(str(value))
    except InvalidOperation:
        return None
    return quantity if quantity.is_finite() else None


def json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
