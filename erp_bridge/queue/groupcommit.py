"""Group commit: concurrent enqueues share one durable transaction.

Every webhook must be on disk before it is answered 2xx, and with ``synchronous=FULL`` each
commit costs an fsync. Under load, requests that arrive while a commit is in flight are gathered
and the next one to run commits them all at once (leader/follower, no extra thread): each caller
still returns only after the commit that holds its entries, so durability is unchanged and the
fsync cost is shared.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .base import Entry, NewEntry


@dataclass
class _Slot:
    entries: Sequence[NewEntry]
    stored: list[Entry] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False


class GroupCommit:
    def __init__(self, enqueue: Callable[[Sequence[NewEntry]], list[Entry]], max_entries: int = 2000):
        self._enqueue = enqueue
        self._max = max_entries
        self._cond = threading.Condition()
        self._pending: list[_Slot] = []
        self._committing = False

    def submit(self, entries: Sequence[NewEntry]) -> list[Entry]:
        """Store ``entries`` durably (with whatever else is waiting) and return them as stored."""
        slot = _Slot(entries)
        with self._cond:
            self._pending.append(slot)
            while not slot.done:
                if self._committing:
                    self._cond.wait()
                    continue
                batch = self._take()
                self._committing = True
                self._cond.release()
                try:
                    self._commit(batch)
                finally:
                    self._cond.acquire()
                    self._committing = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.stored

    def _take(self) -> list[_Slot]:
        batch: list[_Slot] = []
        size = 0
        while self._pending and (not batch or size + len(self._pending[0].entries) <= self._max):
            slot = self._pending.pop(0)
            batch.append(slot)
            size += len(slot.entries)
        return batch

    def _commit(self, batch: list[_Slot]) -> None:
        try:
            stored = self._enqueue([e for slot in batch for e in slot.entries])
        except BaseException as exc:  # every caller in the batch learns it was not stored
            for slot in batch:
                slot.error, slot.done = exc, True
            return
        start = 0
        for slot in batch:
            slot.stored, slot.done = stored[start:start + len(slot.entries)], True
            start += len(slot.entries)
