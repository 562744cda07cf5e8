"""Stop a batch at the first sign the target is down: sent once here, for every connector."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from ...domain import Result
from ...errors import NotAttempted, RetryableError
from .classify import UNSENT_DELAY_S

T = TypeVar("T")
#: what sending one item gives: a Result, or per-part results (a chunk of figures) or one error
R = TypeVar("R", bound="Result | list[Result]")


def until_down(items: Sequence[T], send_one: Callable[[T], R]) -> list[R | NotAttempted]:
    """``send_one`` each item in order. After the first retryable failure (down, overloaded,
    asking us to wait) the rest would fare the same, and sending them anyway would hold the lease
    through N more timeouts: they come back ``NotAttempted`` (no attempt counted)."""
    results: list[R | NotAttempted] = []
    for item in items:
        result = send_one(item)
        results.append(result)
        if isinstance(result, RetryableError) and not isinstance(result, NotAttempted):
            return results + [not_attempted(result)] * (len(items) - len(results))
    return results


def not_attempted(cause: RetryableError) -> NotAttempted:
    return NotAttempted(cause, after=cause.after or UNSENT_DELAY_S)
