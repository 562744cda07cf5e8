"""Stop a batch at the first sign the target is down: sent once here, for every connector."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

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


def in_batches(rows: Sequence[T], size: int, push: Callable[[list[T]], RetryableError | None],
               unsent: Callable[[T, NotAttempted], None]) -> RetryableError | None:
    """``push`` ``rows`` ``size`` at a time (``push`` records each row's outcome and returns the
    error when the target is down). Once one is down the rest are ``unsent``, not attempted, and
    the error is returned. With ``size`` 1 it is also how a batch the target refused as a whole
    is sent again row by row, so each row gets its own outcome."""
    for start in range(0, len(rows), size):
        down = push(list(rows[start:start + size]))
        if down is not None:
            for row in rows[start + size:]:
                unsent(row, not_attempted(down))
            return down
    return None


class Indexed(Protocol):
    @property
    def index(self) -> int:
        """Where the row's outcome goes in the connector's list of outcomes."""


def unsent_rows(outcomes: list[Any]) -> Callable[[Indexed, NotAttempted], None]:
    """``in_batches``' ``unsent`` for rows that carry their figure's ``index`` in ``outcomes``."""
    def unsent(row: Indexed, error: NotAttempted) -> None:
        outcomes[row.index] = error
    return unsent


def not_attempted(cause: RetryableError) -> NotAttempted:
    return NotAttempted(cause, after=cause.after or UNSENT_DELAY_S)
