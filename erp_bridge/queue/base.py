"""The durable queue's contract. SQLite (embedded) and PostgreSQL implement it; one test suite
(tests/unit/queue_contract.py) runs against both.

An entry is one event for one target. Its ordering key is ``(target, item, location)``: for one
key at most one entry is leased at a time, and entries are delivered in the order they were
enqueued. An entry's ``idempotency_key`` is unique per target (one event fans out to several
targets under its own key): enqueuing it again for that target returns the stored entry.
Timestamps come from an injected clock returning epoch seconds (``time.time`` by default).
"""
from __future__ import annotations

import os
import random
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..dispatch.ratelimit import Limits


class State(StrEnum):
    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    DEAD = "dead"
    #: a dead letter an operator resolved without delivering it (the reason is recorded)
    DISCARDED = "discarded"


class Outcome(StrEnum):
    """What one delivery attempt came to (recorded per attempt)."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"
    RELEASED = "released"
    DISCARDED = "discarded"


#: kinds that are sales or restocks a channel already made: they change the SoR's stock for real,
#: so a retryable failure never gives up on them (see RetryPolicy.sale_max_attempts), and a dead
#: one still counts against availability until an operator replays or discards it
SALE_KINDS = frozenset({"decrement", "increment"})
#: kinds whose delivery changes the figures a system of record answers (a pull cache of the
#: key is stale once one is applied)
SOR_CHANGE_KINDS = SALE_KINDS | {"count"}


@dataclass(frozen=True)
class NewEntry:
    target: str
    kind: str
    item: str
    location: str
    idempotency_key: str
    payload: dict[str, Any]
    #: signed quantity this entry will change the target by, when it is a stock change
    quantity: Decimal | None = None
    #: True for availability markers: a pending (not leased) entry with the same ordering key and
    #: kind is replaced by this one instead of queued behind it
    coalesce: bool = False


@dataclass(frozen=True)
class Entry:
    id: int
    target: str
    kind: str
    item: str
    location: str
    idempotency_key: str
    payload: dict[str, Any]
    quantity: Decimal | None
    state: State
    attempts: int
    available_at: datetime
    created_at: datetime
    updated_at: datetime
    lease_owner: str | None = None
    lease_until: datetime | None = None
    last_error: str | None = None
    #: set when a newer coalescing entry replaced this pending one (it is then DONE, never sent)
    superseded_by: int | None = None

    @property
    def ordering_key(self) -> tuple[str, str, str]:
        return (self.target, self.item, self.location)


ENTRY_FIELDS = tuple(f.name for f in fields(Entry))
# built_entry fills the frozen dataclass's __dict__ directly: that is the same object only while
# Entry has no __post_init__, slots or defaults computed in __init__; this fails at import the day
# it gains one
assert not hasattr(Entry, "__post_init__") and "__slots__" not in vars(Entry)


def built_entry(values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Entry:
    """``Entry(**values)`` without the frozen dataclass's generated ``__init__``, which sets each of
    the 17 fields through ``object.__setattr__``: half the queue client's CPU per leased entry on
    PostgreSQL (8.1 -> 1.9 us), about 250 us of a 64-event SQLite cycle (issue 15). Every field
    must be given (tests compare such entries with normally built ones)."""
    entry = object.__new__(Entry)
    entry.__dict__.update(values)
    return entry


@dataclass(frozen=True)
class Attempt:
    entry_id: int
    number: int
    worker: str
    outcome: Outcome
    started_at: datetime
    duration_s: float
    error: str | None


@dataclass(frozen=True)
class TargetStats:
    target: str
    depth: dict[State, int]
    oldest_pending_age_s: float | None


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, never sooner than the target asked (Retry-After)."""

    max_attempts: int = 10
    base_s: float = 1.0
    cap_s: float = 600.0
    jitter: float = 0.5
    #: retryable failures a sale (SALE_KINDS) may have before it dead-letters: None = as
    #: ``max_attempts``; 0 = never (the service default: a sale is not a notification, so it
    #: keeps retrying at ``cap_s`` and the queue raises an alert instead of giving up)
    sale_max_attempts: int | None = None
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
        backoff = min(self.cap_s, self.base_s * (2 ** max(0, attempts - 1)))
        backoff *= 1 - self.jitter * self.rng()
        if retry_after is not None:
            backoff = max(backoff, retry_after)
        return backoff

    def exhausted(self, attempts: int, kind: str | None = None) -> bool:
        if kind in SALE_KINDS and self.sale_max_attempts is not None:
            return bool(self.sale_max_attempts) and attempts >= self.sale_max_attempts
        return attempts >= self.max_attempts

    def overdue(self, attempts: int) -> bool:
        """Past the normal budget (an entry that still retries then deserves an alert)."""
        return attempts >= self.max_attempts


class Queue(Protocol):
    """Durable queue. Every method commits before it returns."""

    #: ``pending_quantity`` never waits for another connection's commit or for the network (a
    #: read of its own on a local file): the pull may then call it on the event loop
    quick_reads: bool
    @property
    def clock(self) -> Callable[[], float]:
        """The queue's time, seconds since the epoch: ``available_at`` and every delay are in it."""

    def enqueue(self, entries: Sequence[NewEntry]) -> list[Entry]:
        """Store entries (one transaction). A duplicate idempotency key returns the stored entry
        unchanged; a coalescing entry replaces a pending one with the same key and kind."""

    def lease(self, worker: str, limit: int, lease_s: float,
              targets: Collection[str] | None = None) -> list[Entry]:
        """Take up to ``limit`` due entries, at most one per ordering key and only the oldest
        unfinished entry of each key, for ``lease_s`` seconds. Expired leases count as pending."""

    def ack(self, entry_ids: Sequence[int], worker: str, duration_s: float = 0.0) -> None:
        """Mark leased entries done (only if ``worker`` still holds the lease)."""

    def ack_and_lease(self, entry_ids: Sequence[int], worker: str, duration_s: float, limit: int,
                      lease_s: float, targets: Collection[str] | None = None) -> list[Entry]:
        """``ack(entry_ids, ...)`` then ``lease(worker, limit, ...)``: a busy worker's step from one
        batch to the next. SQLite does both in one transaction (one commit instead of two)."""

    def fail(self, entry_id: int, worker: str, error: str, *, retryable: bool,
             retry_after: float | None = None, duration_s: float = 0.0) -> Entry:
        """Record a failed attempt: back to pending after the policy's delay, or dead when not
        retryable or the attempts are exhausted. Returns the entry as stored now."""

    def release(self, entry_ids: Sequence[int], worker: str, delay_s: float = 0.0,
                error: str | None = None) -> None:
        """Give leased entries back untouched (shutdown, not sent because the target is down, or
        refused for the target's rate limit or quota), without counting an attempt; due again
        after ``delay_s``. ``error``, why they were not delivered, goes in the released attempt
        and becomes the entry's ``last_error``."""

    def lease_owners(self) -> list[str]:
        """The workers holding unexpired leases now, sorted."""

    def reclaim(self, owners: Collection[str]) -> int:
        """The leases of ``owners`` (workers known to be gone, e.g. a crashed predecessor) end
        now instead of at ``lease_until``: each counts a lost attempt, as at lease expiry (dead
        when the attempts are exhausted), and is due again at once. Returns how many."""

    def get(self, entry_id: int) -> Entry | None: ...

    def attempts(self, entry_id: int) -> list[Attempt]: ...

    def dead_letters(self, target: str | None = None, limit: int = 100, offset: int = 0) -> list[Entry]: ...

    def subscribe(self, callback: Callable[[], Any]) -> None:
        """Call ``callback`` when another process queues work or gives some back (PostgreSQL's
        LISTEN/NOTIFY). One process on SQLite wakes its own workers: nothing to subscribe to."""

    def subscribe_applied(self, callback: Callable[[list[tuple[str, str]] | None], Any]) -> None:
        """Call ``callback(keys)`` when any process that ``announce_applied`` acked changes
        (SOR_CHANGE_KINDS) applied to a system of record, with their (item, location) keys;
        ``None``: any key. PostgreSQL: a NOTIFY sent at the ack's commit, so every host's pull
        cache forgets what it read while another host was applying a sale. SQLite: nothing (its
        one process invalidates its own cache)."""

    def announce_applied(self) -> None:
        """From now on, this queue's acks tell ``subscribe_applied``'s subscribers of every
        process (a cost per ack, paid only where some process keeps a pull cache)."""

    def shared_limits(self) -> Limits:
        """Makes targets' token buckets and concurrency slots as every process on this storage
        shares them (PostgreSQL: rows every host takes from; SQLite: the process's own)."""

    def processes(self) -> list[dict[str, Any]]:
        """The bridge processes connected to this storage now, but the caller: ``process``
        (host:pid), ``sessions`` and ``since`` (ISO time of its oldest session). PostgreSQL reads
        them from ``pg_stat_activity`` (storage.postgres.named); SQLite has none to show."""

    def unfinished(self, target: str, limit: int = 100_000) -> list[Entry]:
        """Pending and leased entries of ``target`` (still on their way), oldest first."""

    def replay(self, entry_id: int) -> Entry:
        """A dead entry goes back to pending with its attempts reset. KeyError if unknown,
        ValueError if it is not dead."""

    def discard(self, entry_id: int, reason: str, who: str = "operator") -> Entry:
        """An operator resolves a dead entry without delivering it: DISCARDED, with ``reason``
        recorded as its last error and as an attempt. From then on a discarded sale no longer
        counts against availability. KeyError if unknown, ValueError if not dead or no reason."""

    def stats(self) -> list[TargetStats]: ...

    def pending_quantity(self, target: str, item: str, location: str,
                         kinds: Collection[str] | None = None, done_since: float | None = None) -> Decimal:
        """Sum of ``quantity`` of unapplied (pending, leased, or dead: a dead sale is still a sale
        until an operator replays or discards it) entries for the key, optionally
        only of the given kinds (e.g. ``{"decrement"}``). With ``done_since`` (epoch seconds, the
        queue's clock) also entries delivered at or after it: a figure read from the target before
        then may not show them yet, whichever process delivered them."""

    def purge_done(self, older_than_s: float) -> int:
        """Delete done entries (and their attempts) last updated more than ``older_than_s`` ago;
        returns how many. Dead letters and unfinished entries are never purged. After this a
        purged key is new again: the targets' own idempotency (unique keys, ledgers, compare-and-
        set) covers a redelivery that late."""

    def ping(self) -> None:
        """Raise if the store cannot be reached."""

    def close(self) -> None: ...


def orphaned_owners(owners: Collection[str], process: str,
                    alive: Callable[[int], bool] | None = None) -> list[str]:
    """The owners a process named ``process`` ("<host>:<pid>") may reclaim at start: workers
    ("<host>:<pid>/<n>") of another, no longer running process on the same host - its crashed or
    killed predecessor. Owners on other hosts, or whose process runs, are left to expire."""
    host, _, own_pid = process.rpartition(":")
    alive = alive or _pid_alive
    out = []
    for owner in owners:
        name = owner.partition("/")[0]
        owner_host, _, pid = name.rpartition(":")
        if owner_host == host and pid.isdigit() and pid != own_pid and not alive(int(pid)):
            out.append(owner)
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True
