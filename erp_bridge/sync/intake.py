"""Intake group commit: concurrent deliveries share one durable transaction.

Every webhook must be on disk before it is answered 2xx, and with ``synchronous=FULL`` each
commit costs an fsync. One committer thread stores whatever is waiting in one transaction, then
answers every caller that transaction held; while it commits, the next callers gather. A caller
hears that its entries are stored only after the commit that holds them, and a failed commit
reaches every caller it held, so durability is what it was with one commit per delivery.

- An HTTP request awaits ``store`` on the event loop: no worker thread is held per request, and
  one commit wakes the loop once for all the requests it answers.
- A thread (a poller, an inbox worker) calls ``accept`` and blocks until its commit.
- Not stored (the store failed, or the bridge is shutting down) is a ``RetryableError`` saying
  why: a webhook is then answered 503 and the platform delivers it again; nothing is lost.

Why not the leader/follower group commit this replaced (``queue/groupcommit.py``): there each
waiting request held a threadpool thread and every commit woke all of them (``notify_all``) to find
the ones it had answered; under a burst of webhooks those wake-ups took the GIL from the event loop
(issue 15, BENCHMARKS.md).
"""
from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from ..errors import BridgeError, RetryableError
from ..queue.base import Entry, NewEntry


@dataclass
class _Slot:
    entries: Sequence[NewEntry]
    future: Future | asyncio.Future
    loop: asyncio.AbstractEventLoop | None = None  # set when ``future`` belongs to an event loop


class Intake:
    def __init__(self, enqueue: Callable[[Sequence[NewEntry]], list[Entry]], max_entries: int = 2000):
        self._enqueue = enqueue
        self._max = max_entries
        self._cond = threading.Condition()
        self._pending: deque[_Slot] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._kicks: set[asyncio.AbstractEventLoop] = set()  # loops with a _kick scheduled

    def accept(self, entries: Sequence[NewEntry]) -> list[Entry]:
        """Store ``entries`` durably (with whatever else is waiting); blocks until committed."""
        future: Future = Future()
        self._submit(_Slot(entries, future))
        return future.result()

    async def store(self, entries: Sequence[NewEntry]) -> list[Entry]:
        """``accept`` for the event loop: the loop serves other requests while this one waits.
        An idle committer is woken once the loop has run what is ready now (``_kick``), not by
        the first of them: the requests a burst brings then share that commit instead of waiting
        for the next (issue 15: fewer commits, each a GIL hand-over per statement)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._submit(_Slot(entries, future, loop), wake=False)
        if loop not in self._kicks:
            self._kicks.add(loop)
            loop.call_soon(self._kick, loop)
        return await future

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._kicks.discard(loop)
        with self._cond:
            self._cond.notify()

    def close(self) -> None:
        """Commit what is waiting, then stop the committer; later callers are refused."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def _submit(self, slot: _Slot, wake: bool = True) -> None:
        with self._cond:
            if self._closed:
                raise RetryableError("not stored: the bridge is shutting down; retry", after=1)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="intake-commit", daemon=True)
                self._thread.start()
            self._pending.append(slot)
            if wake:
                self._cond.notify()

    def _run(self) -> None:
        while batch := self._next_batch():
            self._commit(batch)

    def _next_batch(self) -> list[_Slot]:
        """What is waiting, up to ``max_entries`` (at least one delivery); [] once closed and empty."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            batch: list[_Slot] = []
            size = 0
            while self._pending and (not batch or size + len(self._pending[0].entries) <= self._max):
                batch.append(self._pending.popleft())
                size += len(batch[-1].entries)
            return batch

    def _commit(self, batch: list[_Slot]) -> None:
        try:
            stored = self._enqueue([e for slot in batch for e in slot.entries])
        except BaseException as exc:  # every caller in the batch learns it was not stored, and why
            _answer([(slot, None, _not_stored(exc)) for slot in batch])
            return
        start, answers = 0, list[Answer]()
        for slot in batch:
            answers.append((slot, stored[start:start + len(slot.entries)], None))
            start += len(slot.entries)
        _answer(answers)


Answer = tuple[_Slot, list[Entry] | None, BaseException | None]


def _not_stored(exc: BaseException) -> BaseException:
    """A failed store as a ``RetryableError`` naming the cause (e.g. the disk is full)."""
    if isinstance(exc, BridgeError) or not isinstance(exc, Exception):
        return exc
    error = RetryableError(f"not stored: {exc}", after=1)
    error.__cause__ = exc
    return error


def _answer(answers: list[Answer]) -> None:
    """Threads' futures directly; each event loop's futures in one call on that loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
    for answer in answers:
        slot = answer[0]
        if slot.loop is None:
            _settle(answer)
        else:
            by_loop.setdefault(slot.loop, []).append(answer)
    for loop, group in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_all, group)
        except RuntimeError:  # that loop is closed: nobody is waiting for these answers any more
            pass


def _settle_all(answers: list[Answer]) -> None:
    for answer in answers:
        _settle(answer)


def _settle(answer: Answer) -> None:
    slot, stored, error = answer
    if slot.future.done():  # an HTTP request whose client went away: its entries are stored all the same
        return
    if error is not None:
        slot.future.set_exception(error)
    else:
        slot.future.set_result(stored)
