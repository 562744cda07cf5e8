"""Retry, backoff, Retry-After and dead letters over real HTTP: SQLite queue -> Dispatcher ->
http_json connector -> a fake target on 127.0.0.1 that answers 500, 429/503 with Retry-After,
400, 409, or hangs past the client timeout. The queue runs on a fake clock, so backoff is
stepped, never slept."""
from __future__ import annotations

import time
from decimal import Decimal
from email.utils import formatdate

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from erp_bridge.connectors import registry
from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.dispatch.metrics import DispatchMetrics
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import Decrement
from erp_bridge.mapping.schema import SystemMapping
from erp_bridge.queue.base import Outcome, RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from tests.fakes.clock import FakeClock
from tests.fakes.http_target import FakeTarget, Reply

MAX_ATTEMPTS = 3
TIMEOUT_S = 0.3
TOKEN = "s3cr3t-token-value"


def mapping(url, auth=None, on_status=None):
    """A real http_json mapping (as a file would give it) pointing at the fake target."""
    return SystemMapping.model_validate({
        "version": 1, "system": "shop", "connector": "http_json", "role": "channel",
        "connection": {"base_url": url, "timeout_s": TIMEOUT_S, "auth": auth or {"kind": "none"}},
        "locations": {"map": [{"internal": "WH/Stock", "code": "WH"}]},
        **({"writes": {"on_status": on_status}} if on_status else {})})


@pytest.fixture
def target():
    with FakeTarget() as t:
        yield t


@pytest.fixture
def clock():
    return FakeClock(time.time())  # near real time, so an HTTP-date Retry-After makes sense


@pytest.fixture
def queue(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=MAX_ATTEMPTS, base_s=1, jitter=0), clock=clock)
    yield q
    q.close()


@pytest.fixture
def dispatcher(queue, target):
    connector = registry.build(mapping(target.url), {})
    yield Dispatcher(queue, {"shop": connector}, metrics=DispatchMetrics(CollectorRegistry()), batch_size=16)
    connector.close()


def sale(order, item="SKU-1"):
    return Decrement(channel="web", order=order, line="1", item=item, location="WH", quantity=Decimal(1))


def enqueue(queue, *orders):
    return [queue.enqueue([entry_for("shop", sale(o, item=f"SKU-{o}"))])[0] for o in orders]


def settle(dispatcher, queue, clock, rounds=20):
    """Deliver, then jump the clock to the next due retry, until nothing is unfinished."""
    for _ in range(rounds):
        if not dispatcher.run_once("w"):
            pending = [s for s in queue.stats() if s.depth[State.PENDING] or s.depth[State.LEASED]]
            if not pending:
                return
            clock.advance(60)
    raise AssertionError("queue did not settle")


def statuses(target, key):
    return [r.status for r in target.requests_for(key)]


@pytest.mark.parametrize("reply, state, error, delay", [
    (Reply(200), State.DONE, None, None),
    (Reply(409, body={"error": "duplicate"}), State.DONE, None, None),
    (Reply(500, body={"error": "db down"}), State.PENDING, 'HTTP 500 from POST stock-changes: {"error": "db down"}', 1),
    (Reply(503, {"Retry-After": "12"}), State.PENDING, "HTTP 503 from POST stock-changes: (empty body)", 12),
    (Reply(429, {"Retry-After": "30"}, {"error": "slow down"}), State.PENDING, 'HTTP 429 from POST stock-changes: {"error": "slow down"}', 30),
    (Reply(429), State.PENDING, "HTTP 429 from POST stock-changes: (empty body)", 1),
    (Reply(400, body={"error": "unknown sku"}), State.DEAD,
     'RejectedError: HTTP 400 from POST stock-changes: {"error": "unknown sku"}', None),
    (Reply(422, body="x" * 5000), State.DEAD, "RejectedError: HTTP 422 from POST stock-changes: " + '"' + "x" * 199, None),
    (Reply(hang=True), State.PENDING, "POST stock-changes timed out: ReadTimeout", 1),
], ids=["200-delivered", "409-duplicate-is-delivered", "500-retries", "503-retry-after",
        "429-retry-after", "429-without-retry-after-backs-off", "400-dead-letters", "422-excerpt-is-short",
        "hang-times-out-and-retries"])
def test_one_response_one_outcome(target, queue, dispatcher, clock, reply, state, error, delay):
    entry = enqueue(queue, "o1")[0]
    target.plan(entry.idempotency_key, reply)
    dispatcher.run_once("w")
    stored = queue.get(entry.id)
    assert (stored.state, stored.last_error) == (state, error)
    if delay is not None:
        assert stored.available_at.timestamp() == pytest.approx(clock() + delay)


def test_retry_after_as_http_date(target, queue, dispatcher, clock):
    entry = enqueue(queue, "o1")[0]
    target.plan(entry.idempotency_key, Reply(429, {"Retry-After": formatdate(time.time() + 120, usegmt=True)}))
    dispatcher.run_once("w")
    wait = queue.get(entry.id).available_at.timestamp() - clock()
    assert 100 < wait <= 121  # whole seconds on the wire; far above the 1 s backoff either way


def test_everything_is_delivered_or_dead_lettered_nothing_lost(target, queue, dispatcher, clock):
    plans = {
        "retry-twice": [Reply(500), Reply(502)],
        "retry-after": [Reply(429, {"Retry-After": "45"})],
        "hang": [Reply(hang=True)],
        "rejected": [Reply(400, body={"error": "unknown sku"})],
        "always-500": [Reply(500, body={"error": f"down {n}"}) for n in range(1, MAX_ATTEMPTS + 1)],
        "plain": [],
    }
    entries = {e.payload["order"]: e for e in enqueue(queue, *plans)}
    for order, replies in plans.items():
        target.plan(entries[order].idempotency_key, *replies)
    settle(dispatcher, queue, clock)
    key = lambda order: entries[order].idempotency_key
    assert sorted(target.applied) == sorted(key(o) for o in ("retry-twice", "retry-after", "hang", "plain"))
    assert statuses(target, key("retry-twice")) == [500, 502, 200]
    assert statuses(target, key("hang")) == [None, 200]
    assert statuses(target, key("rejected")) == [400]
    assert statuses(target, key("always-500")) == [500] * MAX_ATTEMPTS
    dead = {d.payload["order"]: d.last_error for d in queue.dead_letters()}
    assert dead == {"rejected": 'RejectedError: HTTP 400 from POST stock-changes: {"error": "unknown sku"}',
                    "always-500": f'HTTP 500 from POST stock-changes: {{"error": "down {MAX_ATTEMPTS}"}}'}
    tries = queue.attempts(entries["retry-after"].id)
    assert tries[1].started_at.timestamp() - tries[0].started_at.timestamp() >= 45
    assert {s.target: s.depth for s in queue.stats()}["shop"] == {
        State.PENDING: 0, State.LEASED: 0, State.DONE: 4, State.DEAD: 2, State.DISCARDED: 0}


@pytest.mark.parametrize("reply, delay", [(Reply(503, {"Retry-After": "5"}), 5), (Reply(hang=True), 1)],
                         ids=["throttled", "timed-out"])
def test_retryable_answer_holds_back_the_rest_of_the_batch_without_costing_it_attempts(
        target, queue, dispatcher, clock, reply, delay):
    first, *rest = enqueue(queue, "a", "b", "c")
    target.plan(first.idempotency_key, reply)
    dispatcher.run_once("w")
    assert target.counts() == (0, 1)
    held = [queue.get(e.id) for e in rest]
    assert [(e.state, e.attempts, e.available_at.timestamp()) for e in held] == [
        (State.PENDING, 0, pytest.approx(clock() + delay))] * 2
    assert [a.outcome for a in queue.attempts(rest[0].id)] == [Outcome.RELEASED]


def test_replay_redelivers_a_dead_letter_with_the_same_key(target, queue, dispatcher, clock):
    entry = enqueue(queue, "o1")[0]
    target.plan(entry.idempotency_key, *[Reply(500)] * MAX_ATTEMPTS)
    settle(dispatcher, queue, clock)
    assert queue.get(entry.id).state is State.DEAD
    queue.replay(entry.id)
    settle(dispatcher, queue, clock)
    assert queue.get(entry.id).state is State.DONE
    sent_keys = {r.headers["Idempotency-Key"] for r in target.requests_for(entry.idempotency_key)}
    assert sent_keys == {"web:o1:1"} and target.applied == ["web:o1:1"]
    assert [a.outcome for a in queue.attempts(entry.id)][-1] is Outcome.DELIVERED


def test_duplicates_and_replays_change_nothing_already_delivered(target, queue, dispatcher, clock):
    delivered = enqueue(queue, "o1")[0]
    settle(dispatcher, queue, clock)
    before = (queue.get(delivered.id), target.counts())
    assert queue.enqueue([entry_for("shop", sale("o1", item="SKU-o1"))])[0] == before[0]
    with pytest.raises(ValueError):
        queue.replay(delivered.id)
    settle(dispatcher, queue, clock)
    assert (queue.get(delivered.id), target.counts()) == before


def test_redelivery_of_what_the_target_already_has_is_a_duplicate_it_drops(target, queue, dispatcher):
    entry = enqueue(queue, "o1")[0]
    target.preload(entry.idempotency_key)  # sent by a worker that crashed before its ack
    dispatcher.run_once("w")
    assert statuses(target, entry.idempotency_key) == [409]
    assert queue.get(entry.id).state is State.DONE and target.applied == []


def test_bearer_token_is_sent_and_never_echoed_into_errors(target, queue, clock):
    auth = {"kind": "bearer", "secrets": {"token": "shop_token"}}
    connector = registry.build(mapping(target.url, auth), {"shop_token": SecretStr(TOKEN)})
    d = Dispatcher(queue, {"shop": connector}, metrics=DispatchMetrics(CollectorRegistry()))
    entry = enqueue(queue, "o1")[0]
    target.plan(entry.idempotency_key, Reply(403, body={"error": f"bad token Bearer {TOKEN}"}))
    d.run_once("w")
    assert target.requests_for(entry.idempotency_key)[0].headers["Authorization"] == f"Bearer {TOKEN}"
    error = queue.get(entry.id).last_error
    assert TOKEN not in error and "***" in error
    connector.close()


def test_a_refused_static_token_is_a_configuration_error_naming_the_secret(target, queue, clock):
    auth = {"kind": "bearer", "secrets": {"token": "shop_token"}}
    connector = registry.build(mapping(target.url, auth), {"shop_token": SecretStr(TOKEN)})
    d = Dispatcher(queue, {"shop": connector}, metrics=DispatchMetrics(CollectorRegistry()))
    entry = enqueue(queue, "o1")[0]
    target.plan(entry.idempotency_key, Reply(401, body={"error": f"bad token Bearer {TOKEN}"}))
    d.run_once("w")
    error = queue.get(entry.id).last_error
    assert error == "ConfigError: shop refused the credentials (HTTP 401 from POST stock-changes): check secrets shop_token"
    connector.close()


@pytest.mark.parametrize("on_status, state, detail", [
    (None, State.DEAD, "RejectedError: HTTP 422 from POST stock-changes: "),
    ({"422": "retry"}, State.PENDING, "HTTP 422 from POST stock-changes: "),
    ({"4xx": "ignore"}, State.DONE, None),
], ids=["default-4xx-fails", "integrator-says-422-retries", "integrator-says-4xx-is-ignored"])
def test_writes_on_status_decides_what_an_error_status_means(target, queue, clock, on_status, state, detail):
    connector = registry.build(mapping(target.url, on_status=on_status), {})
    d = Dispatcher(queue, {"shop": connector}, metrics=DispatchMetrics(CollectorRegistry()))
    entry = enqueue(queue, "o1")[0]
    target.plan(entry.idempotency_key, Reply(422, body={"error": "locked for stocktake"}))
    d.run_once("w")
    stored = queue.get(entry.id)
    assert stored.state is state
    assert (stored.last_error or "").startswith(detail) if detail else stored.last_error is None
    connector.close()
