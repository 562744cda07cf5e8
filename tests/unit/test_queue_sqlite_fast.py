"""What the SQLite queue's fast paths (issue 15) must keep: a batch is stored exactly as its
entries one by one would be, lease and ack commit at the durability the module docstring argues
for and enqueue at FULL, and a file an older version created is upgraded in place."""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time

import pytest

from erp_bridge.queue.base import Attempt, Entry, Outcome, RetryPolicy, State
from erp_bridge.queue.sqlite import ENTRY_COLUMNS, PAGE_SIZE, SQLiteQueue
from erp_bridge.queue.sqlite_rows import at
from tests.fakes.clock import FakeClock
from tests.unit.queue_contract import LEASE_S, marker, new

#: a mixed batch: new keys, a key queued behind another of the batch, a duplicate of a stored
#: entry, a duplicate inside the batch, markers replacing a stored one and one of the batch
BATCH = [new("a1"), new("a2"), new("b1", item="SKU-2"), new("old"), new("a1"),
         marker("m2", item="SKU-3"), new("c1", item="SKU-3"), marker("m3", item="SKU-3"),
         new("d1", item="SKU-4", quantity=None), marker("m4", item="SKU-5"), new("e1", item="SKU-5")]


@pytest.fixture
def clock():
    return FakeClock()


def _rows(q: SQLiteQueue) -> list[tuple]:
    return [tuple(r) for r in q._db.execute("SELECT * FROM entries ORDER BY id")]


def _seeded(path, clock) -> SQLiteQueue:
    q = SQLiteQueue(path, clock=clock)
    q.enqueue([new("old"), marker("m1", item="SKU-3")])
    return q


def test_a_batch_is_stored_as_its_entries_one_by_one(tmp_path, clock):
    batched, single = _seeded(tmp_path / "a.db", clock), _seeded(tmp_path / "b.db", clock)
    clock.advance(1)
    got = batched.enqueue(BATCH)
    want = [e for new_entry in BATCH for e in single.enqueue([new_entry])]
    assert got == want
    assert _rows(batched) == _rows(single)
    assert got[4] == got[0] and got[3].created_at < got[0].created_at  # duplicates: the stored ones
    order = [e.idempotency_key for e in batched.lease("w", 100, LEASE_S)]
    assert order == [e.idempotency_key for e in single.lease("w", 100, LEASE_S)]
    assert order == ["old", "b1", "c1", "d1", "m4"]  # one per key, oldest first (m3 replaced m2)
    batched.close(), single.close()


def test_entries_returned_by_lease_equal_what_get_reads(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", clock=clock)
    q.enqueue([new("k1"), new("k2", item="SKU-2", quantity=None), marker("m", item="SKU-3")])
    for leased in q.lease("w", 10, LEASE_S):
        assert leased == q.get(leased.id) and leased.state is State.LEASED
    q.close()


@pytest.mark.parametrize("payload", [
    {"order": "o1", "quantity": "-1", "nested": [1, 2.5, None, True, {"x": "é\u2028"}]},
    {"big": 10 ** 40, "tiny": 5e-324, "neg_zero": -0.0, "exp": 1e300},
    {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")},  # json.dumps writes these
    {"surrogate": "\ud800", "deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
], ids=["plain", "numbers", "non-finite", "odd-text"])
def test_a_payload_reads_back_as_json_reads_it(tmp_path, clock, payload):
    """Leased payloads are decoded by msgspec, with json for what it refuses: the same objects."""
    q = SQLiteQueue(tmp_path / "q.db", clock=clock)
    stored = q.enqueue([dataclasses.replace(new("k"), payload=payload)])[0]
    text = q._db.execute("SELECT payload FROM entries WHERE id = ?", (stored.id,)).fetchone()[0]
    for read in (q.lease("w", 10, LEASE_S)[0].payload, q.get(stored.id).payload):
        assert repr(read) == repr(json.loads(text))  # repr: nan == nan is False, -0.0 == 0.0 is True
    q.close()


def test_entry_columns_are_entry_fields_in_order():
    assert ENTRY_COLUMNS.split(", ") == [f.name for f in dataclasses.fields(Entry)]


def test_entries_built_without_init_are_entries_like_any_other(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", clock=clock)
    stored = q.enqueue([new("a"), new("b", item="SKU-2", quantity=None)])
    leased = q.lease("w", 10, LEASE_S)
    for fast in (*stored, *leased):
        slow = Entry(**{f.name: getattr(fast, f.name) for f in dataclasses.fields(Entry)})
        assert fast == slow and repr(fast) == repr(slow)
        assert dataclasses.replace(fast, attempts=5).attempts == 5
        with pytest.raises(dataclasses.FrozenInstanceError):
            fast.attempts = 1  # type: ignore[misc]
    q.close()


def _commits(q: SQLiteQueue, action) -> list[str]:
    """The synchronous setting in force at each COMMIT that ``action`` runs."""
    statements: list[str] = []
    q._db.set_trace_callback(statements.append)
    action()
    q._db.set_trace_callback(None)
    level, out = q._db.execute("PRAGMA synchronous").fetchone()[0], []
    level = {0: "OFF", 1: "NORMAL", 2: "FULL"}[level]
    for sql in statements:  # replay what was set before each commit
        if sql.upper().startswith("PRAGMA SYNCHRONOUS="):
            level = sql.split("=")[1]
        elif sql.upper() == "COMMIT":
            out.append(level)
    return out


def _cycle(q: SQLiteQueue, key: str) -> dict[str, list[str]]:
    """The synchronous setting of each commit of enqueue, lease, ack and fail."""
    leased: list[Entry] = []
    out = {"enqueue": _commits(q, lambda: q.enqueue([new(key)])),
           "lease": _commits(q, lambda: leased.extend(q.lease("w", 10, LEASE_S))),
           "ack": _commits(q, lambda: q.ack([e.id for e in leased], "w"))}
    failing = q.enqueue([new(key + "-f", item="SKU-9")])[0]
    q.lease("w", 10, LEASE_S)
    out["fail"] = _commits(q, lambda: q.fail(failing.id, "w", "boom", retryable=False))
    return out


def test_enqueue_commits_at_full_lease_and_ack_at_normal(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", clock=clock)
    for key in ("k1", "k2"):  # and back again: the setting is per commit, not sticky
        assert _cycle(q, key) == {"enqueue": ["FULL"], "lease": ["NORMAL"], "ack": ["NORMAL"],
                                  "fail": ["FULL"]}
    q.close()


def test_ack_and_lease_commits_once_at_normal(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", clock=clock)
    first = q.enqueue([new("a1"), new("a2")])[0]
    q.lease("w", 10, LEASE_S)
    got: list[Entry] = []
    assert _commits(q, lambda: got.extend(q.ack_and_lease([first.id], "w", 0.0, 10, LEASE_S))) == ["NORMAL"]
    assert [e.idempotency_key for e in got] == ["a2"]
    q.close()


def test_a_lease_that_dead_letters_an_expired_entry_commits_at_full(tmp_path, clock):
    """A dead letter is an operator's to find: it must not come undone on a power cut."""
    q = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=2), clock=clock)
    x = q.enqueue([new("x")])[0]
    q.lease("w1", 10, LEASE_S)
    clock.advance(LEASE_S + 1)
    assert _commits(q, lambda: q.lease("w2", 10, LEASE_S)) == ["NORMAL"]  # expired once: leased again
    clock.advance(LEASE_S + 1)
    y = q.enqueue([new("y", item="SKU-2")])[0]
    assert _commits(q, lambda: q.lease("w3", 10, LEASE_S)) == ["FULL"]  # its last attempt: dead
    assert q.get(x.id).state is State.DEAD and q.get(y.id).state is State.LEASED
    assert [a.outcome for a in q.attempts(x.id)] == [Outcome.RETRY, Outcome.DEAD]  # counted once
    z = q.enqueue([new("z", item="SKU-2")])[0]
    assert _commits(q, lambda: q.ack_and_lease([y.id], "w3", 0.0, 10, LEASE_S)) == ["NORMAL"]  # nothing dies
    assert q.get(z.id).state is State.LEASED
    q.close()


def test_a_benchmark_setting_below_full_is_never_raised(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", clock=clock, synchronous="OFF")
    assert _commits(q, lambda: q.enqueue([new("k")])) == ["OFF"]
    assert _commits(q, lambda: q.lease("w", 10, LEASE_S)) == ["OFF"]
    q.close()


#: the schema as the previous version created it (entries_state, no entries_done/entries_dead)
OLD_SCHEMA = """
CREATE TABLE entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL, kind TEXT NOT NULL, item TEXT NOT NULL, location TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, payload TEXT NOT NULL, quantity TEXT,
    coalescing INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL, head INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    leased_at REAL, lease_owner TEXT, lease_until REAL, last_error TEXT, superseded_by INTEGER,
    UNIQUE (target, idempotency_key)
);
CREATE INDEX entries_open ON entries (target, item, location, id) WHERE state IN ('pending', 'leased');
CREATE INDEX entries_due ON entries (available_at) WHERE head = 1 AND state = 'pending';
CREATE INDEX entries_lease ON entries (lease_until) WHERE state = 'leased';
CREATE INDEX entries_state ON entries (target, state);
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id INTEGER NOT NULL REFERENCES entries (id), number INTEGER NOT NULL,
    worker TEXT NOT NULL, outcome TEXT NOT NULL, started_at REAL NOT NULL,
    duration_s REAL NOT NULL, error TEXT
);
CREATE INDEX attempts_entry ON attempts (entry_id, id);
INSERT INTO entries (target, kind, item, location, idempotency_key, payload, quantity, state, head,
    available_at, created_at, updated_at) VALUES
    ('shop', 'decrement', 'SKU-1', 'WH', 'old-1', '{"key": "old-1"}', '-1', 'pending', 1, 0, 0, 0),
    ('shop', 'decrement', 'SKU-1', 'WH', 'old-2', '{"key": "old-2"}', '-1', 'pending', 0, 0, 0, 0),
    ('shop', 'decrement', 'SKU-2', 'WH', 'old-3', '{"key": "old-3"}', '-1', 'dead', 0, 0, 0, 0);
INSERT INTO entries (target, kind, item, location, idempotency_key, payload, quantity, state, attempts,
    available_at, created_at, updated_at) VALUES
    ('shop', 'decrement', 'SKU-3', 'WH', 'old-4', '{"key": "old-4"}', '-1', 'done', 2, 0, 0, 9);
INSERT INTO attempts (entry_id, number, worker, outcome, started_at, duration_s, error) VALUES
    (4, 1, 'w0', 'retry', 1, 0.5, 'boom'), (4, 2, 'w0', 'delivered', 8.75, 0.25, NULL);
"""


def _indexes(q: SQLiteQueue) -> set[str]:
    return {r[0] for r in q._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'"
                                        " AND tbl_name = 'entries' AND name NOT LIKE 'sqlite_%'")}


def test_a_file_of_the_previous_version_is_upgraded_in_place(tmp_path, clock):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript(OLD_SCHEMA)
    old.close()
    q = SQLiteQueue(path, clock=clock)
    assert _indexes(q) == {"entries_open", "entries_due", "entries_lease", "entries_done_key", "entries_dead"}
    assert [e.idempotency_key for e in q.dead_letters("shop")] == ["old-3"]
    first = q.lease("w", 10, LEASE_S)
    assert [e.idempotency_key for e in first] == ["old-1"]
    q.ack([first[0].id], "w")
    assert [e.idempotency_key for e in q.lease("w", 10, LEASE_S)] == ["old-2"]
    depth = q.stats()[0].depth
    assert (depth[State.DONE], depth[State.LEASED], depth[State.DEAD]) == (2, 1, 1)
    # delivered before the upgrade: its attempt row; after: the entry's row (no attempt row)
    assert [(a.number, a.worker, a.outcome, a.started_at, a.duration_s) for a in q.attempts(4)] == [
        (1, "w0", Outcome.RETRY, at(1), 0.5), (2, "w0", Outcome.DELIVERED, at(8.75), 0.25)]
    assert [(a.number, a.outcome) for a in q.attempts(first[0].id)] == [(1, Outcome.DELIVERED)]
    upgraded = _indexes(q)
    assert q._db.execute("PRAGMA page_size").fetchone()[0] == 4096  # a file keeps its page size
    q.close()
    again = SQLiteQueue(path, clock=clock)
    assert _indexes(again) == upgraded  # reopening changes nothing
    again.close()


def test_a_new_file_has_the_smaller_pages_and_works_in_wal(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", clock=clock)
    assert q._db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 2048
    assert q._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    q.enqueue([new("k")])
    q.close()
    again = SQLiteQueue(tmp_path / "q.db", clock=clock)
    assert [e.idempotency_key for e in again.lease("w", 10, LEASE_S)] == ["k"]
    assert again._db.execute("PRAGMA page_size").fetchone()[0] == 2048
    again.close()


def test_the_delivered_attempt_is_kept_in_the_entry_row_and_read_back_as_before(tmp_path, clock):
    """An ack writes no attempts row (two B-tree writes per delivered entry, issue 15); attempts()
    gives the same Attempt it recorded before: number, worker, start = ack time - duration."""
    q = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=5), clock=clock)
    retried, once = q.enqueue([new("r"), new("o", item="SKU-2")])
    q.lease("w1", 10, LEASE_S)
    clock.advance(2)
    q.fail(retried.id, "w1", "boom", retryable=True, retry_after=0, duration_s=0.5)
    q.ack([once.id], "w1", duration_s=1.25)
    clock.advance(60)
    q.ack_and_lease([], "w2", 0.0, 10, LEASE_S)
    clock.advance(3)
    q.ack_and_lease([retried.id], "w2", 0.75, 10, LEASE_S)
    assert q._db.execute("SELECT count(*) FROM attempts").fetchone()[0] == 1  # the retry only
    start = clock() - 0.75
    assert q.attempts(retried.id) == [
        Attempt(retried.id, 1, "w1", Outcome.RETRY, at(clock() - 63.5), 0.5, "boom"),
        Attempt(retried.id, 2, "w2", Outcome.DELIVERED, at(start), 0.75, None)]
    assert q.attempts(once.id) == [Attempt(once.id, 1, "w1", Outcome.DELIVERED, at(clock() - 64.25), 1.25, None)]
    assert q.get(once.id).lease_owner is None  # the worker is the attempt's, not the entry's
    clock.advance(10)
    assert q.purge_done(5) == 2 and q.attempts(once.id) == [] and q.attempts(retried.id) == []
    q.close()


def test_ids_returned_by_a_batch_are_the_stored_ones_after_a_purge_and_duplicates(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", clock=clock)
    q.enqueue([new("gone1"), new("gone2", item="SKU-2")])
    q.ack([e.id for e in q.lease("w", 10, LEASE_S)], "w")
    clock.advance(10)
    assert q.purge_done(5) == 2  # the top ids are gone: new ones must not reuse them
    q.enqueue([new("x1"), new("x1"), new("x2", item="SKU-2")])  # a duplicate takes an id too
    for batch in ([new(f"y{i}", item=f"SKU-{i}") for i in range(5)], [new("x2"), new("z", item="SKU-7")]):
        for e in q.enqueue(batch):
            assert q.get(e.id) == e
    assert min(e.id for e in q.unfinished("shop")) > 2
    q.close()


def test_the_hot_statements_never_walk_all_entries_of_a_target(tmp_path, clock):
    """Every statement of enqueue (markers included), lease (with the dispatcher's target list),
    ack and pending_quantity is answered by an index on the key or on the open entries, never by
    the unique (target, idempotency_key) index on the target alone: that walks every entry of
    the target, done ones too, and made intake fall from 1,025 to 410 webhooks/s as the queue
    filled (issue 15, scripts/bench_webhooks.py)."""
    q = SQLiteQueue(tmp_path / "q.db", clock=clock)
    q.enqueue([new(f"done-{n}", item=f"SKU-{n}") for n in range(50)])
    q.ack([e.id for e in q.lease("w", 50, LEASE_S)], "w")
    statements: list[str] = []
    q._db.set_trace_callback(statements.append)
    q.enqueue([new("n1"), marker("m1", item="SKU-3"), marker("m2", item="SKU-3")])
    q.ack([e.id for e in q.lease("w", 10, LEASE_S, targets=["shop", "other"])], "w")
    q.pending_quantity("shop", "SKU-1", "WH", kinds={"decrement"}, done_since=clock())
    q._db.set_trace_callback(None)
    reads = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "UPDATE", "INSERT"))]
    assert reads
    for sql in reads:
        plan = " | ".join(r[3] for r in q._db.execute("EXPLAIN QUERY PLAN " + sql))
        assert "sqlite_autoindex_entries_1 (target=?)" not in plan, (sql, plan)
        assert "SCAN entries" not in plan, (sql, plan)


# -- begin_enqueue: the intake's enqueue in two steps (statements on the event loop, commit on a thread)

def test_a_begun_enqueue_stores_what_enqueue_would_once_committed_at_full(tmp_path, clock):
    begun_q, plain_q = _seeded(tmp_path / "begun.db", clock), _seeded(tmp_path / "plain.db", clock)
    reader = sqlite3.connect(tmp_path / "begun.db")
    count = "SELECT count(*) FROM entries"
    stored_before = reader.execute(count).fetchone()[0]
    got: list[Entry] = []

    def both_steps() -> None:
        commit = begun_q.begin_enqueue(BATCH)
        assert commit is not None
        assert reader.execute(count).fetchone()[0] == stored_before  # nobody sees it before the commit
        got.extend(commit())

    assert _commits(begun_q, both_steps) == ["FULL"]  # a webhook's entries survive a power cut once answered
    assert got == plain_q.enqueue(BATCH)
    assert _rows(begun_q) == _rows(plain_q)
    assert reader.execute(count).fetchone()[0] > stored_before
    for q in (begun_q, plain_q):
        q.close()
    reader.close()


def test_begin_enqueue_never_waits_for_another_writer(tmp_path, clock):
    """None at once while another process holds the file's write lock, or another thread this
    queue's connection; then it works again."""
    q = _seeded(tmp_path / "q.db", clock)
    writer = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    started = time.perf_counter()
    assert q.begin_enqueue([new("a")]) is None
    assert time.perf_counter() - started < 1  # not the 30 s busy timeout
    writer.execute("ROLLBACK")
    assert q._db.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000  # other statements still wait
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with q._tx():
            inside.set()
            leave.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(5)
    assert q.begin_enqueue([new("a")]) is None
    leave.set()
    holder.join(5)
    commit = q.begin_enqueue([new("a")])
    assert commit is not None and [e.idempotency_key for e in commit()] == ["a"]
    q.close()
    writer.close()


def test_a_begun_enqueue_whose_statements_fail_stores_nothing_and_unlocks(tmp_path, clock):
    q = _seeded(tmp_path / "q.db", clock)
    before = _rows(q)
    with pytest.raises(sqlite3.Error):  # a value SQLite cannot bind: the statements fail, as enqueue's would
        q.begin_enqueue([new("a"), dataclasses.replace(new("b"), location=object())])
    assert _rows(q) == before and not q._db.in_transaction
    commit = q.begin_enqueue([new("c")])
    assert commit is not None and [e.idempotency_key for e in commit()] == ["c"]
    assert [e.idempotency_key for e in q.enqueue([new("d")])] == ["d"]
    q.close()


def test_an_error_sqlite_rolled_back_itself_reaches_the_caller_as_it_was(tmp_path, clock):
    """A full disk or an I/O error ends the transaction inside SQLite; the queue's own ROLLBACK
    would then fail with "no transaction is active" and hide what went wrong."""
    q = _seeded(tmp_path / "q.db", clock)
    q._db.execute("CREATE TEMP TRIGGER refuse BEFORE INSERT ON entries BEGIN SELECT RAISE(ROLLBACK, 'disk is full'); END")
    with pytest.raises(sqlite3.IntegrityError, match="disk is full"):
        q.enqueue([new("a"), new("b")])
    with pytest.raises(sqlite3.IntegrityError, match="disk is full"):
        q.begin_enqueue([new("a"), new("b")])
    q._db.execute("DROP TRIGGER refuse")
    commit = q.begin_enqueue([new("a")])  # unlocked, no transaction left open
    assert commit is not None and [e.idempotency_key for e in commit()] == ["a"]
    q.close()
