"""Shopify Admin GraphQL transport: one POST with a (connect, read) timeout, one classify.

Shopify answers most failures with HTTP 200 and an ``errors`` array (throttling included), so
the status code alone says little: ``classify`` reads both. Query cost is metered per app and
shop (``extensions.cost.throttleStatus``): the transport keeps the last status it saw and holds a
request back while the bucket cannot pay for it, instead of letting Shopify refuse it.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from ...errors import BridgeError, ConfigError, NotAttempted, RejectedError, RetryableError, Throttled
from ...mapping.wire import PLACEHOLDER
from ..runtime.classify import CONNECT_TIMEOUT_S, Redactor, retry_after_s
from ..runtime.sessions import ThreadSessions

#: a wait for cost budget up to this long happens in place; longer ones go back to the queue
INLINE_WAIT_S = 1.0
#: what an operation costs before Shopify has told us (inventorySetQuantities is ~10 points)
DEFAULT_COST = {"mutation": 10.0, "query": 10.0}


@dataclass
class CostBudget:
    """Shopify's leaky bucket as last reported; ``wait_s`` says how long until ``cost`` fits."""

    maximum: float | None = None
    available: float = 0.0
    restore_rate: float = 1.0
    at: float = 0.0

    def update(self, status: Mapping[str, Any] | None, now: float) -> None:
        if status and status.get("restoreRate"):
            self.maximum = float(status["maximumAvailable"])
            self.available = float(status["currentlyAvailable"])
            self.restore_rate, self.at = float(status["restoreRate"]), now

    def wait_s(self, cost: float, now: float) -> float:
        if self.maximum is None:
            return 0.0  # nothing known yet: the first answer tells us
        available = min(self.maximum, self.available + (now - self.at) * self.restore_rate)
        return max(0.0, (min(cost, self.maximum) - available) / self.restore_rate)

    def spend(self, cost: float, now: float) -> None:
        if self.maximum is not None:  # until the answer comes, count what is already in flight
            self.available = min(self.maximum, self.available + (now - self.at) * self.restore_rate) - cost
            self.at = now


def classify(result: requests.Response | requests.RequestException, secret_name: str,
             redact: tuple[str, ...] = ()) -> dict | BridgeError:
    """The one place a Shopify answer becomes a payload (``data``, ``extensions``) or an error."""
    if isinstance(result, requests.RequestException):
        kind = "timed out" if isinstance(result, requests.Timeout) else "failed"
        return RetryableError(f"Shopify GraphQL request {kind}: {type(result).__name__}")  # no URL
    status = result.status_code
    if status in (401, 403):
        return ConfigError(f"Shopify rejected the access token (HTTP {status}): check secret {secret_name}")
    if status == 429:
        return Throttled("Shopify HTTP 429 (rate limited)", after=retry_after_s(result.headers.get("Retry-After")))
    if status >= 500:
        return RetryableError(f"Shopify HTTP {status}: {_excerpt(result.text, redact)}")
    if status != 200:
        return RejectedError(f"Shopify HTTP {status}: {_excerpt(result.text, redact)}")
    try:
        payload = result.json()
    except ValueError:  # a proxy or maintenance page, not the API
        return RetryableError(f"Shopify HTTP 200 without JSON: {_excerpt(result.text, redact)}")
    return _graphql_errors(payload, redact) or payload


def _graphql_errors(payload: Any, redact: tuple[str, ...]) -> BridgeError | None:
    errors = payload.get("errors") if isinstance(payload, dict) else "not a JSON object"
    if not errors:
        return None
    if isinstance(errors, list) and any(_code(e) == "THROTTLED" for e in errors):
        cost = (payload.get("extensions") or {}).get("cost") or {}
        return Throttled("Shopify THROTTLED the query (cost budget spent)", after=throttle_wait_s(cost))
    messages = [e.get("message", str(e)) if isinstance(e, dict) else str(e)
                for e in (errors if isinstance(errors, list) else [errors])]
    return RejectedError(f"Shopify GraphQL error: {_excerpt('; '.join(messages), redact)}")


def throttle_wait_s(cost: Mapping[str, Any]) -> float | None:
    """(requestedQueryCost - currentlyAvailable) / restoreRate, from ``extensions.cost``."""
    status = cost.get("throttleStatus") or {}
    try:
        missing = float(cost["requestedQueryCost"]) - float(status["currentlyAvailable"])
        return max(0.0, missing / float(status["restoreRate"]))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _code(error: Any) -> str | None:
    return ((error.get("extensions") or {}).get("code")) if isinstance(error, dict) else None


def _excerpt(text: str, redact: tuple[str, ...]) -> str:
    return Redactor.of(redact).excerpt(text)


class Transport:
    """POSTs GraphQL documents to one shop; thread-safe (one requests.Session per thread)."""

    def __init__(self, secrets: Mapping[str, str], token_name: str, *, timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._secrets, self._token_name = dict(secrets), token_name
        self._timeout = (min(CONNECT_TIMEOUT_S, timeout_s), timeout_s)
        self._redact = tuple(v for v in self._secrets.values() if v)
        self._clock, self._sleep = clock, sleep
        self._budget, self._costs = CostBudget(), dict(DEFAULT_COST)
        self._lock, self._sessions = threading.Lock(), ThreadSessions()

    def send(self, url: str, headers: Mapping[str, str], data: str, operation: str) -> dict | BridgeError:
        """``headers`` may hold ``{secret:NAME}`` placeholders (the mapping engine's); ``operation``
        is "mutation" or "query", for the cost estimate."""
        held = self._reserve(operation)
        if held is not None:
            return held
        try:
            response = self._sessions.get().post(url, data=data.encode(), timeout=self._timeout,
                                            headers={**self._resolve(headers), "Content-Type": "application/json"})
        except ConfigError as exc:
            return exc
        except requests.RequestException as exc:
            return classify(exc, self._token_name)
        with response:
            outcome = classify(response, self._token_name, self._redact)
            self._learn(response, operation)
        return outcome

    def close(self) -> None:
        self._sessions.close()

    def _reserve(self, operation: str) -> NotAttempted | None:
        cost = self._costs[operation]
        with self._lock:
            wait = self._budget.wait_s(cost, self._clock())
        if wait > INLINE_WAIT_S:  # nothing sent: the entries go back without counting an attempt
            return NotAttempted(RetryableError(f"holding back: Shopify cost budget refills in {wait:.1f} s"), after=wait)
        if wait > 0:
            self._sleep(wait)
        with self._lock:
            self._budget.spend(cost, self._clock())
        return None

    def _learn(self, response: requests.Response, operation: str) -> None:
        try:
            cost = ((response.json() or {}).get("extensions") or {}).get("cost") or {}
        except (ValueError, AttributeError):
            return
        with self._lock:
            self._budget.update(cost.get("throttleStatus"), self._clock())
            if cost.get("requestedQueryCost"):
                self._costs[operation] = float(cost["requestedQueryCost"])

    def _resolve(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {name: PLACEHOLDER.sub(self._secret, value) for name, value in headers.items()}

    def _secret(self, match) -> str:
        kind, name = match.group(1), match.group(2)
        if kind != "secret" or name not in self._secrets:
            raise ConfigError(f"Shopify connector cannot fill {{{kind}:{name}}}: name the token in "
                              f"connection.auth.secrets.token (auth kind header)")
        return self._secrets[name]

