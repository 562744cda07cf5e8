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

On the event loop, with a queue that can begin an enqueue without waiting (``begin``: the SQLite
queue's ``begin_enqueue``), the loop itself runs the transaction's statements for what its
requests brought, and only the commit, the step that waits for the disk, runs on a thread (one
executor thread per Intake). While that commit runs, the loop gathers the next requests. The
committer thread's statements each gave the GIL to the loop and waited to get it back (several
per commit, a few milliseconds under a burst of webhooks); on the loop they cost none. A batch
of more than LOOP_ENTRIES entries, or one the queue cannot begin at once (a worker thread or
another process is writing), has its whole enqueue run on that thread instead, which waits its
turn: the loop never waits for a lock or an fsync.

Why not the leader/follower group commit this replaced (``queue/groupcommit.py``): there each
waiting request held a threadpool thread and every commit woke all of them (``notify_all``) to find
the ones it had answered; under a burst of webhooks those wake-ups took the GIL from the event loop
(issue 15, BENCHMARKS.md).
"""
from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from ..errors import BridgeError, RetryableError
from ..queue.base import Entry, NewEntry


@dataclass
class _Slot:
    entries: Sequence[NewEntry]
    future: Future | asyncio.Future
    loop: asyncio.AbstractEventLoop | None = None  # set when ``future`` belongs to an event loop


#: a batch of at most this many entries runs its statements on the event loop; a bigger one's
#: whole enqueue runs on the committer's thread. A small batch's cost is the GIL hand-over at each
#: statement, which the loop saves; in a big one SQLite's own work (done without the GIL) dominates
#: and overlaps the loop's on the other core. Measured with 16 and 64 concurrent senders (issue 15,
#: BENCHMARKS.md "sixth round"): statements on the loop were faster at 16 (about 8 webhooks, 24
#: entries, per commit) and slower at 64 (20-30 webhooks per commit) than on the thread.
LOOP_ENTRIES = 48


@dataclass
class _LoopCommits:
    """One event loop's requests waiting for their commit, and whether one is under way."""

    waiting: list[_Slot] = field(default_factory=list)
    busy: bool = False


class Intake:
    def __init__(self, enqueue: Callable[[Sequence[NewEntry]], list[Entry]], max_entries: int = 2000,
                 begin: Callable[[Sequence[NewEntry]], Callable[[], list[Entry]] | None] | None = None):
        self._enqueue = enqueue
        self._begin = begin
        self._max = max_entries
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopCommits] = weakref.WeakKeyDictionary()
        self._committer: ThreadPoolExecutor | None = None  # the loop's commits (only when ``begin``)
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
        for the next (issue 15: fewer commits, each a GIL hand-over per statement). With ``begin``
        the same, the statements run on the loop (``_begin_on_loop``)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._begin is not None:
            return await self._store_on_loop(_Slot(entries, future, loop))
        self._submit(_Slot(entries, future, loop), wake=False)
        if loop not in self._kicks:
            self._kicks.add(loop)
            loop.call_soon(self._kick, loop)
        return await future

    async def _store_on_loop(self, slot: _Slot) -> list[Entry]:
        assert slot.loop is not None and isinstance(slot.future, asyncio.Future)
        with self._cond:
            if self._closed:
                raise _shutting_down()
            if self._committer is None:
                self._committer = ThreadPoolExecutor(1, thread_name_prefix="intake-loop-commit")
        state = self._loops.setdefault(slot.loop, _LoopCommits())
        state.waiting.append(slot)
        if not state.busy:  # after what the loop has ready now: a burst shares the commit
            state.busy = True
            slot.loop.call_soon(self._begin_on_loop, slot.loop, state)
        return await slot.future

    def _begin_on_loop(self, loop: asyncio.AbstractEventLoop, state: _LoopCommits) -> None:
        """Run the waiting requests' statements here and their commit on the committer; if they
        are more than LOOP_ENTRIES, or the queue cannot begin now, their whole enqueue there (it
        waits for the queue, not the loop)."""
        batch: list[_Slot] = []
        size = 0
        while state.waiting and (not batch or size + len(state.waiting[0].entries) <= self._max):
            batch.append(state.waiting.pop(0))
            size += len(batch[-1].entries)
        if not batch:
            state.busy = False
            return
        if self._closed:
            _settle_all([(slot, None, _shutting_down()) for slot in batch + state.waiting])
            state.waiting, state.busy = [], False
            return
        entries = [e for slot in batch for e in slot.entries]
        try:
            begun = self._begin(entries) if len(entries) <= LOOP_ENTRIES else None  # type: ignore[misc]
        except BaseException as exc:  # not stored: every caller in the batch learns why
            _settle_all([(slot, None, _not_stored(exc)) for slot in batch])
            loop.call_soon(self._begin_on_loop, loop, state)
            return
        work = partial(self._enqueue, entries) if begun is None else begun  # begun: the commit, on the committer
        try:
            done = loop.run_in_executor(self._committer, work)
        except RuntimeError:  # the committer was shut down (close) since: finish here (the queue is held)
            done = loop.create_future()
            try:
                done.set_result(work())
            except BaseException as exc:
                done.set_exception(exc)
        done.add_done_callback(lambda d: self._committed(loop, state, batch, d))

    def _committed(self, loop: asyncio.AbstractEventLoop, state: _LoopCommits, batch: list[_Slot],
                   done: asyncio.Future) -> None:
        error = done.exception()
        if error is not None:
            _settle_all([(slot, None, _not_stored(error)) for slot in batch])
        else:
            _settle_all(_split(batch, done.result()))
        self._begin_on_loop(loop, state)

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
        if self._committer is not None:  # a loop's commit under way finishes (it holds the queue)
            self._committer.shutdown(wait=True)

    def _submit(self, slot: _Slot, wake: bool = True) -> None:
        with self._cond:
            if self._closed:
                raise _shutting_down()
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
        _answer(_split(batch, stored))


Answer = tuple[_Slot, list[Entry] | None, BaseException | None]


def _shutting_down() -> RetryableError:
    return RetryableError("not stored: the bridge is shutting down; retry", after=1)


def _split(batch: list[_Slot], stored: list[Entry]) -> list[Answer]:
    """Each caller's own entries of a commit's."""
    start, answers = 0, list[Answer]()
    for slot in batch:
        answers.append((slot, stored[start:start + len(slot.entries)], None))
        start += len(slot.entries)
    return answers


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
