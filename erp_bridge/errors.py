"""Errors split by what the caller must do (DESIGN.md, "Errors split by what the caller must do").

- ConfigError / MappingError: an operator or integrator must fix a file; never retried.
- RetryableError(after=...): network, 429, 5xx, lock conflicts; try again later, honouring ``after``.
  Throttled (a RetryableError): the target refused the call for its rate limit or quota (429);
  the entries wait without counting an attempt, the target's calls pause.
- RejectedError: the target refused the data; dead-letter with its reason.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file, located precisely enough to fix without guessing."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        if not self.file:
            return f"{self.path}: {self.message}" if self.path else self.message
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" {self.path}:" if self.path else ":"
        return f"{where}{key} {self.message}"


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    #: the HTTP status of the answer this error was classified from (None: no answer)
    status: int | None = None
    #: True when the request certainly never reached the target (nothing can have been created)
    never_sent: bool = False


class ConfigError(BridgeError):
    """The configuration is wrong; the operator must fix it. Carries every problem found at once."""

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem(file="", line=None, column=None, path="", message=problems)]
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class MappingError(ConfigError):
    """A mapping file is wrong; the integrator must fix it."""


class RetryableError(BridgeError):
    """Worth trying again; ``after`` is the delay the target asked for (seconds), if it said."""

    def __init__(self, message: str, after: float | None = None):
        super().__init__(message)
        self.after = after


class RejectedError(BridgeError):
    """The target refused this data for good; it goes to the dead-letter state with this reason."""


class Throttled(RetryableError):
    """The target refused the call for its rate limit or quota (HTTP 429, or the status a system
    uses for it: ``Sender(throttled_on=...)``, Cin7 Core's 503), not for this data. The
    dispatcher pauses the target's calls, for ``after`` or a backoff that grows while it keeps
    refusing, and gives the entries back without counting an attempt: a quota spent for the rest
    of the day (Zoho Inventory's per-plan limit) must not dead-letter what waits for it.

    ``system``: the system that refused, when it is not the target called (a channel's push that
    had to read its system of record first): that system pauses, the target does not."""

    def __init__(self, message: str, after: float | None = None, system: str | None = None):
        super().__init__(message, after=after)
        self.system = system


class NotAttempted(RetryableError):
    """The connector did not send this item: an earlier item of the same batch showed the target
    down or throttling, and the rest would fare the same. The entry goes back to the queue after
    ``after`` seconds without counting an attempt, so a neighbour's failure never dead-letters it."""

    def __init__(self, cause: RetryableError, after: float | None = None):
        super().__init__(f"not sent: {cause}", after=after if after is not None else cause.after)
        self.cause = cause
