"""The queue contract on PostgreSQL (the same suite as SQLite), plus what only a shared server
has: two processes' connections never lease the same entry, heads stay one per key under
concurrent writers, migrations run once, a wrong URL says what to fix without its password.

Needs a real PostgreSQL (tests/pg.py): skipped, with the reason, when none is reachable."""
from __future__ import annotations

import os
import socket
import threading
import time
from decimal import Decimal

import psycopg
import pytest

from erp_bridge.errors import ConfigError
from erp_bridge.queue import open_queue
from erp_bridge.queue.base import NewEntry, RetryPolicy, State
from erp_bridge.queue.postgres import PostgresQueue
from erp_bridge.storage import postgres as pg
from tests.pg import pg_url  # noqa: F401 - fixture
from tests.unit.queue_contract import *  # noqa: F403 - the contract suite runs here
from tests.unit.queue_contract import LEASE_S, marker, new, queue  # noqa: F401 - fixture
from tests.unit.queue_contract_sums import check, every_state

pytestmark = pytest.mark.postgres


@pytest.fixture
def queue_factory(pg_url):  # noqa: F811
    opened: list[PostgresQueue] = []

    def factory(policy, clock):
        opened.append(PostgresQueue(pg_url, policy, clock=clock))
        return opened[-1]
    yield factory
    for q in opened:
        q.close()


def test_two_workers_never_lease_the_same_entry(pg_url, clock):  # noqa: F811
    a = PostgresQueue(pg_url, clock=clock)
    a.enqueue([new(f"k{i}", item=f"I{i}") for i in range(50)])
    got: dict[str, set[int]] = {}
    with psycopg.connect(pg_url) as other:  # a second process's view: its own connection
        assert other.execute("SELECT count(*) FROM bridge_entries").fetchone()[0] == 50
    def lease(name):
        got[name] = {e.id for e in a.lease(name, 30, LEASE_S)}
    threads = [threading.Thread(target=lease, args=(n,)) for n in ("a", "b")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(got["a"]) + len(got["b"]) == 50 and not got["a"] & got["b"]
    a.close()


def test_concurrent_enqueue_and_ack_keep_one_head_per_key(pg_url, clock):  # noqa: F811
    """Writers racing on the same keys: each key still delivers one at a time, in order."""
    q = PostgresQueue(pg_url, clock=clock)
    keys = [f"SKU-{n}" for n in range(4)]
    errors: list[BaseException] = []

    def produce(p):
        try:
            for i in range(40):
                q.enqueue([new(f"p{p}:{i}:{k}", item=k) for k in keys])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    delivered: list[tuple[str, int]] = []
    produced = threading.Event()

    def consume(w):
        idle = 0
        while not produced.is_set() or idle < 20:  # a stuck key leaves entries behind: caught below
            batch = q.lease(f"w{w}", 8, LEASE_S)
            idle = 0 if batch else idle + 1
            delivered.extend((e.item, e.id) for e in batch)
            q.ack([e.id for e in batch], f"w{w}")
    producers = [threading.Thread(target=produce, args=(p,)) for p in range(3)]
    consumers = [threading.Thread(target=consume, args=(w,)) for w in range(3)]
    [t.start() for t in producers + consumers]
    [t.join(120) for t in producers]
    produced.set()
    [t.join(120) for t in consumers]
    assert not errors
    for key in keys:
        ids = [i for item, i in delivered if item == key]
        assert ids == sorted(ids) and len(ids) == len(set(ids)) == 120
    q.close()



@pytest.mark.parametrize("give_back", [
    pytest.param(lambda q, e: q.release([e.id], "w1"), id="released"),
    pytest.param(lambda q, e: q.fail(e.id, "w1", "503", retryable=True), id="failed-retryable"),
    pytest.param(lambda q, e: q.fail(e.id, "w1", "400", retryable=False), id="dead-lettered"),
])
def test_a_late_ack_of_an_entry_given_back_changes_nothing(queue, pg_url, give_back):  # noqa: F811
    """The ack finds its entries by ``lease_owner`` alone (no ``state`` test, which would send the
    planner to the lease index): every way out of 'leased' must clear the owner."""
    queue.enqueue([new("a"), new("b")])  # b waits behind a: an ack taken for a would promote it
    leased = queue.lease("w1", 10, LEASE_S)
    give_back(queue, leased[0])
    before = (queue.get(leased[0].id), queue.attempts(leased[0].id))
    queue.ack([leased[0].id], "w1")
    assert (queue.get(leased[0].id), queue.attempts(leased[0].id)) == before
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM bridge_entries WHERE (lease_owner IS NOT NULL)"
                            " <> (state = 'leased')").fetchone()[0] == 0


def test_an_ack_a_killed_process_sent_commits_before_its_leases_are_taken_back(queue, pg_url):  # noqa: F811
    """PostgreSQL still runs what a process sent before it was killed (measured: a transaction
    sent just before a SIGKILL commits after it). A restarted process taking back its
    predecessor's leases must wait for that ack, then take back only what stayed leased."""
    from erp_bridge.queue.postgres_sql import id_array
    queue.enqueue([new("a", item="SKU-A"), new("b", item="SKU-B")])
    a, b = queue.lease("host:1/w", 10, LEASE_S)
    with psycopg.connect(pg_url, row_factory=psycopg.rows.dict_row) as late:  # the dead process's backend
        late.execute("BEGIN")
        queue._ack(late, {"now": time.time(), "ids": id_array([a.id]), "worker": "host:1/w", "duration": 0.01})
        taken: list[int] = []
        reclaim = threading.Thread(target=lambda: taken.append(queue.reclaim(["host:1/w"])))
        reclaim.start()
        reclaim.join(0.5)
        assert reclaim.is_alive(), "the reclaim waits for the ack in flight"
        late.execute("COMMIT")
    reclaim.join(10)
    assert taken == [1]
    assert queue.get(a.id).state is State.DONE and queue.get(b.id).state is State.PENDING
    assert [t.error for t in queue.attempts(a.id) if t.error] == []
    assert [t.error for t in queue.attempts(b.id)] == ["lease expired: worker host:1/w did not finish"]


def test_migrations_run_once_and_are_recorded(pg_url):  # noqa: F811
    first = PostgresQueue(pg_url)
    with psycopg.connect(pg_url, row_factory=psycopg.rows.dict_row) as conn:
        assert pg.versions(conn) == [v for v, _, _ in pg.MIGRATIONS]
        assert pg.migrate(conn) == []  # nothing left to apply
    second = PostgresQueue(pg_url)  # another process opening the same database
    second.enqueue([new("k")])
    assert first.get(1).idempotency_key == "k"
    first.close(), second.close()


def test_migration_5_fills_the_running_sums_from_the_rows_already_there(pg_url, clock, monkeypatch):  # noqa: F811
    # a database an older version made and filled (with migration 6: this version's ack needs it)
    monkeypatch.setattr(pg, "MIGRATIONS", [m for m in pg.MIGRATIONS if m[0] != 5])
    old = PostgresQueue(pg_url, clock=clock)
    since = clock()
    ids, keys = every_state(old, clock)
    old.close()
    monkeypatch.undo()
    upgraded = PostgresQueue(pg_url, clock=clock)
    with psycopg.connect(pg_url, row_factory=psycopg.rows.dict_row) as conn:
        assert 5 in pg.versions(conn)
    for key in keys:
        check(upgraded, ids, key, since)
    upgraded.close()


def test_migration_6_keeps_the_delivered_attempts_acked_before_it(pg_url, clock, monkeypatch):  # noqa: F811
    """Before migration 6 an ack wrote an attempts row; after it, the entry row keeps the delivered
    attempt. Both read back as the same Attempt, and a process of an older version still running
    during a rolling upgrade (attempts rows) is read the same way."""
    monkeypatch.setattr(pg, "MIGRATIONS", [m for m in pg.MIGRATIONS if m[0] < 6])
    old = PostgresQueue(pg_url, clock=clock)
    old.enqueue([new("a", item="A"), new("b", item="B")])
    leased = old.lease("w-old", 10, LEASE_S)
    with psycopg.connect(pg_url) as conn:  # the ack as versions before migration 6 wrote it
        conn.execute("UPDATE bridge_entries SET state = 'done', head = false, attempts = attempts + 1,"
                     " updated_at = %s, lease_owner = NULL, lease_until = NULL WHERE id = %s", (clock(), leased[0].id))
        conn.execute("INSERT INTO bridge_attempts (entry_id, number, worker, outcome, started_at, duration_s)"
                     " VALUES (%s, 1, 'w-old', 'delivered', %s, 0.25)", (leased[0].id, clock() - 0.25))
    old.close()
    monkeypatch.undo()
    upgraded = PostgresQueue(pg_url, clock=clock)
    with psycopg.connect(pg_url, row_factory=psycopg.rows.dict_row) as conn:
        assert 6 in pg.versions(conn)
    upgraded.ack([leased[1].id], "w-old", duration_s=0.5)
    before, after = upgraded.attempts(leased[0].id), upgraded.attempts(leased[1].id)
    assert [(a.number, a.worker, a.outcome.value, a.duration_s) for a in before] == [(1, "w-old", "delivered", 0.25)]
    assert [(a.number, a.worker, a.outcome.value, a.duration_s) for a in after] == [(1, "w-old", "delivered", 0.5)]
    assert after[0].started_at.timestamp() == pytest.approx(clock() - 0.5)
    with psycopg.connect(pg_url) as conn:  # the new ack wrote no attempts row
        assert conn.execute("SELECT count(*) FROM bridge_attempts WHERE entry_id = %s",
                            (leased[1].id,)).fetchone()[0] == 0
    upgraded.close()


def test_notify_wakes_a_subscriber_in_another_process(pg_url):  # noqa: F811
    listening, woken = PostgresQueue(pg_url), threading.Event()
    listening.subscribe(woken.set)
    assert listening._listener.ready.wait(10)
    producer = PostgresQueue(pg_url + "&application_name=producer")
    producer.enqueue([new("k")])
    assert woken.wait(10)
    listening.close(), producer.close()


def test_an_ack_tells_every_process_which_keys_it_applied(pg_url):  # noqa: F811
    """Once announcing, the ack of sales and counts NOTIFYs their (item, location) keys at its
    commit; an availability push's ack (nothing applied to a system of record) sends nothing; a
    key list over PostgreSQL's 8,000-byte payload is sent as "any key" (None). A queue that does
    not announce (no pull client configured) sends nothing."""
    listening, heard = PostgresQueue(pg_url), []
    arrived = threading.Condition()

    def hear(keys):
        with arrived:
            heard.append(keys)
            arrived.notify_all()

    listening.subscribe_applied(hear)
    assert listening._listener.ready.wait(10)
    assert heard == [None]  # at (re)connection: whatever was sent before is lost, any key may be stale
    acker = PostgresQueue(pg_url + "&application_name=acker")
    quiet = PostgresQueue(pg_url + "&application_name=quiet")
    quiet.enqueue([new("q1", item="stool")])
    quiet.ack([e.id for e in quiet.lease("w", 10, LEASE_S)], "w")
    acker.announce_applied()

    def deliver(entries) -> None:
        acker.enqueue(entries)
        leased = acker.lease("w", 1000, LEASE_S)
        assert len(leased) == len(entries)
        acker.ack([e.id for e in leased], "w")

    def next_heard(timeout_s: float = 10) -> list | None:
        with arrived:
            assert arrived.wait_for(lambda: len(heard) > 1, timeout_s), "no notification"
            return heard.pop(1)

    deliver([new("s1", item="chair", location="WH"), new("s2", item="desk", location="WH2"),
             new("c1", item="lamp", location="WH", kind="count", quantity="5")])
    assert sorted(next_heard()) == [("chair", "WH"), ("desk", "WH2"), ("lamp", "WH")]  # not the stool
    deliver([marker("m1", target="web", item="chair")])
    deliver([new("s3", item="sofa", location="WH")])
    assert next_heard() == [("sofa", "WH")]  # the marker's ack came between and sent nothing
    deliver([new(f"b{n}", item="x" * 200 + str(n), location="WH") for n in range(40)])
    assert next_heard() is None
    listening.close(), acker.close(), quiet.close()


def test_open_queue_postgres_url(pg_url):  # noqa: F811
    q = open_queue(pg_url.replace("postgresql://", "postgres://", 1), RetryPolicy())
    assert q.enqueue([new("k", quantity="-3")])[0].quantity == Decimal("-3")
    assert q.get(1).state is State.PENDING
    q.close()


def test_every_session_names_its_process_unless_the_url_names_it(pg_url):  # noqa: F811
    def names(url: str) -> list[str]:
        with psycopg.connect(pg_url) as conn:
            return [r[0] for r in conn.execute("SELECT application_name FROM pg_stat_activity"
                                               " WHERE datname = current_database() AND pid <> pg_backend_pid()")]
    mine = f"erp-bridge {socket.gethostname()}:{os.getpid()}"
    q = open_queue(pg_url, RetryPolicy())
    q.subscribe(lambda: None)  # the LISTEN connection too
    assert pg.named(pg_url) == {"application_name": mine}
    deadline = time.monotonic() + 10
    while names(pg_url).count(mine) < 2 and time.monotonic() < deadline:  # the pool's and LISTEN's
        time.sleep(0.05)
    assert names(pg_url).count(mine) >= 2, names(pg_url)
    q.close()
    joiner = "&" if "?" in pg_url else "?"
    assert pg.named(f"{pg_url}{joiner}application_name=bridge-blue") == {}
    assert pg.named("host=db port") == {}  # malformed: libpq names the fault when it connects


def test_unreachable_server_names_the_cause_and_never_the_password():
    with pytest.raises(ConfigError) as err:
        open_queue("postgresql://bridge:pg_pw_271828@127.0.0.1:1/bridge", RetryPolicy())
    message = str(err.value)
    assert "pg_pw_271828" not in message and "bridge:***@127.0.0.1:1" in message
    assert "cannot be reached" in message and "queue.url" in message


def test_db_migrate_applies_once_then_finds_nothing_to_do(pg_url, monkeypatch, tmp_path, capsys):  # noqa: F811
    from erp_bridge.cli import main

    monkeypatch.setenv("ERP_BRIDGE_QUEUE__URL", pg_url)
    monkeypatch.setenv("ERP_BRIDGE_DATA_DIR", str(tmp_path))
    assert main(["db", "migrate"]) == 0
    assert main(["db", "migrate"]) == 0
    from erp_bridge.storage.schema import MIGRATIONS

    first, second = capsys.readouterr().out.strip().splitlines()
    versions = [version for version, _, _ in MIGRATIONS]  # every migration, the inboxes' (4) included
    assert f"applied {', '.join(map(str, versions))};" in first
    assert f"nothing to apply; schema version {versions[-1]}" in second


def test_a_pipelined_transaction_is_one_transaction_and_keeps_nothing_when_it_fails(pg_url):  # noqa: F811
    """pg.run(pipeline=True) sends no BEGIN/COMMIT: the server's implicit transaction up to the
    Sync is the transaction, so a Python error or a failing statement must leave nothing."""
    pool = pg.acquire(pg_url)
    try:
        pg.run(pool, lambda conn: conn.execute("CREATE TABLE scratch (x int)"))

        def insert(x, then):
            def work(conn):
                conn.execute("INSERT INTO scratch VALUES (%s)", (x,))
                return then(conn)
            return work

        def python_error(conn):
            raise RuntimeError("after a queued write")
        with pytest.raises(RuntimeError):
            pg.run(pool, insert(1, python_error), pipeline=True)
        with pytest.raises(psycopg.errors.DivisionByZero):
            pg.run(pool, insert(2, lambda conn: conn.execute("SELECT 1/0")), pipeline=True)
        first, second = pg.run(pool, insert(3, lambda conn: (conn.execute("SELECT txid_current() AS t"),
                                                              conn.execute("SELECT txid_current() AS t"))),
                               pipeline=True)
        assert first.fetchone() == second.fetchone()
        with pg.reading(pool) as conn:
            assert [r["x"] for r in conn.execute("SELECT x FROM scratch")] == [3]
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        pg.release(pg_url)


def test_only_the_lease_and_the_ack_commit_without_waiting_for_their_flush(pg_url, clock, monkeypatch):  # noqa: F811
    """synchronous_commit per transaction (postgres.py's docstring): off for the lease and the
    ack, the session's (on) for the enqueue, a failure and the expiry that may dead-letter; and
    set for the transaction only, never left on a pooled connection."""
    seen: list[str] = []
    run = pg.run

    def spying(pool, work, attempts=5, pipeline=False):
        def observed(conn):
            result = work(conn)
            seen.append(conn.execute("SELECT current_setting('synchronous_commit') AS s"))
            return result
        return run(pool, observed, attempts, pipeline)
    monkeypatch.setattr(pg, "run", spying)
    q = PostgresQueue(pg_url, RetryPolicy(max_attempts=5), clock=clock)
    q.enqueue([new("a"), new("b", item="I2")])
    leased = q.lease("w", 10, LEASE_S)
    q.ack([leased[0].id], "w")
    q.fail(leased[1].id, "w", "boom", retryable=True)
    clock.advance(3600)
    q.lease("w", 10, LEASE_S)
    clock.advance(LEASE_S + 1)  # that lease runs out: the next lease expires it first
    assert [e.id for e in q.lease("w", 10, LEASE_S)] == [leased[1].id]  # leased by the expiry's transaction
    settings = [cur.fetchone()["s"] for cur in seen]
    assert settings == ["on", "off", "off", "on", "off", "off", "on"]
    assert q.attempts(leased[1].id)[-1].error.startswith("lease expired")
    with pg.reading(q._pool) as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "on"
    q.close()


def test_a_payload_reads_back_as_it_was_stored(queue):  # noqa: F811
    """The pool's own jsonb loader (storage.postgres._JsonbLoader) against every kind of value."""
    payload = {"order": "Bestellung #12 – Größe XL ✓", "n": 2 ** 70, "x": -2.5e-7, "ok": True, "none": None,
               "lines": [{"sku": "A\\\"B\n", "qty": 0}], "empty": {}, "list": []}
    stored = queue.enqueue([NewEntry(target="shop", kind="decrement", item="SKU-1", location="WH",
                                     idempotency_key="p", payload=payload, quantity=Decimal(-1))])[0]
    assert queue.get(stored.id).payload == payload
    assert queue.lease("w", 1, LEASE_S)[0].payload == payload


def test_the_pools_json_loaders_read_what_the_server_prints(queue):  # noqa: F811
    """jsonb is printed canonically (the fast loader's premise); json keeps its input's text,
    whitespace around it included, and keeps psycopg's loader."""
    with pg.reading(queue._pool) as conn:
        row = conn.execute("""SELECT ' {"a": [1, 2.5, "é"]} '::jsonb AS b, ' {"a": 1} '::json AS j,"""
                           """ '"text"'::jsonb AS s, 'null'::jsonb AS n""").fetchone()
    assert row == {"b": {"a": [1, 2.5, "é"]}, "j": {"a": 1}, "s": "text", "n": None}
