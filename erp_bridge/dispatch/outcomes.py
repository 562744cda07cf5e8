"""Outcome vocabulary connectors share with the dispatcher beyond errors.py.

(Belongs in errors.py next to RetryableError; kept here until that file's owner moves it.)
"""
from __future__ import annotations

from ..errors import RetryableError


class NotAttempted(RetryableError):
    """The connector did not send this item: an earlier item of the same batch showed the target
    down or throttling, and the rest would fare the same. The entry goes back to the queue after
    ``after`` seconds without counting an attempt, so a neighbour's failure never dead-letters it."""

    def __init__(self, cause: RetryableError, after: float | None = None):
        super().__init__(f"not sent: {cause}", after=after if after is not None else cause.after)
        self.cause = cause
