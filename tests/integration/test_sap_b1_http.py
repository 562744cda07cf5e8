"""SAP B1 over real HTTP: SQLite queue -> Dispatcher -> sap_b1 connector -> the fake Service
Layer. SAP down for a while: moves queue and retry with backoff, and after recovery each is
posted exactly once, in order per (item, location). A bad item dead-letters with its name. The
queue and the ledger run on one fake clock, so backoff and the settle window are stepped, not
slept. Then vcrpy cassettes of the happy path, with credentials and cookies filtered."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import vcr
from prometheus_client import CollectorRegistry

from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.dispatch.metrics import DispatchMetrics
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import Delivered
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from tests.fakes.clock import FakeClock
from tests.fakes.sap_b1 import FakeServiceLayer, connector_for, move, sap_mapping

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes" / "sap_b1"
USERNAME, PASSWORD = "bridge-integration-user", "S3cr3t-P@ss-for-cassettes"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def sl():
    with FakeServiceLayer(username=USERNAME, password=PASSWORD) as fake:
        for item in ("CHAIR-BLUE", "CHAIR-RED"):
            fake.stock(item, "01", 1000)
        yield fake


@pytest.fixture
def clock():
    return FakeClock(time.time())


@pytest.fixture
def queue(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=8, base_s=1, jitter=0), clock=clock)
    yield q
    q.close()


@pytest.fixture
def dispatcher(sl, queue, clock, tmp_path):
    connector = connector_for(sl, tmp_path, mapping=sap_mapping(sl.url, timeout_s=1.0), clock=clock)
    yield Dispatcher(queue, {"sap_b1": connector}, metrics=DispatchMetrics(CollectorRegistry()), batch_size=16)
    connector.close()


def settle(dispatcher, queue, clock, rounds=40):
    for _ in range(rounds):
        if not dispatcher.run_once("w"):
            if not any(s.depth[State.PENDING] or s.depth[State.LEASED] for s in queue.stats()):
                return
            clock.advance(30)
    raise AssertionError("queue did not settle")


def enqueue(queue, *moves):
    return [queue.enqueue([entry_for("sap_b1", m)])[0] for m in moves]


def test_sap_down_for_a_while_then_every_move_posted_once_in_order(sl, queue, dispatcher, clock):
    moves = [move(str(n), item=("chair-blue", "chair-red")[n % 2], quantity=n) for n in range(1, 9)]
    entries = enqueue(queue, *moves)
    sl.down()
    for _ in range(3):  # three rounds of retries while SAP is unreachable
        dispatcher.run_once("w")
        clock.advance(30)
    assert {queue.get(e.id).state for e in entries} == {State.PENDING}
    assert max(queue.get(e.id).attempts for e in entries) >= 2
    sl.up()
    settle(dispatcher, queue, clock)
    assert {queue.get(e.id).state for e in entries} == {State.DONE}
    lines = sl.lines()
    assert sorted(line["Quantity"] for line in lines) == list(range(1, 9))  # each once
    for item in ("CHAIR-BLUE", "CHAIR-RED"):
        per_item = [line["Quantity"] for line in lines if line["ItemCode"] == item]
        assert per_item == sorted(per_item)  # journal order kept per (item, location)


def test_bad_item_dead_letters_with_its_name_and_the_rest_is_posted(sl, queue, dispatcher, clock):
    good, bad = enqueue(queue, move("1"), move("2", item="no-such-chair"))
    settle(dispatcher, queue, clock)
    assert queue.get(good.id).state is State.DONE
    dead = queue.get(bad.id)
    assert dead.state is State.DEAD
    assert dead.last_error == ("RejectedError: HTTP 400 from POST InventoryGenExits: SAP error -5002: Item 'NO-SUCH-CHAIR' not found "
                               "[DocumentLines.ItemCode][line: 1]")
    assert [line["ItemCode"] for line in sl.lines()] == ["CHAIR-BLUE"]


# --- cassettes ----------------------------------------------------------------------------------
def _scrub_request(request):
    if request.path.endswith("/Login") and request.body:
        body = json.loads(request.body)
        body.update(UserName="FILTERED", Password="FILTERED")
        request.body = json.dumps(body).encode()
        request.headers.pop("Content-Length", None)  # would tell the credentials' length
    return request


def _scrub_response(response):
    headers = response["headers"]
    for name in [n for n in headers if n.lower() == "set-cookie"]:
        headers[name] = [re.sub(r"=([^;]*)", "=FILTERED", v, count=1) for v in headers[name]]
    body = response["body"].get("string") or b""
    if b"SessionId" in body:
        data = json.loads(body)
        data["SessionId"] = "FILTERED"
        response["body"]["string"] = json.dumps(data).encode()
    return response


def recorder(record_mode):
    return vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode=record_mode,
                   match_on=("method", "path", "query"),  # the fake's port changes every run
                   filter_headers=["Cookie", "Authorization"], before_record_request=_scrub_request,
                   before_record_response=_scrub_response, decode_compressed_response=True)


def happy_path(connector):
    posted = connector.post_moves([move("4711", quantity=3), move("4712", item="chair-red", quantity=2)])
    figures = connector.read_availability([("chair-blue", "WH/Stock")])
    connector.close()
    return posted, figures


@pytest.mark.skipif(os.environ.get("RECORD_CASSETTES") != "1", reason="set RECORD_CASSETTES=1 to re-record")
def test_record_the_happy_path_cassette(sl, tmp_path):
    (CASSETTES / "happy_path.yaml").unlink(missing_ok=True)
    with recorder("once").use_cassette("happy_path.yaml"):
        posted, _ = happy_path(connector_for(sl, tmp_path, mapping=_both_roles(sl.url)))
    assert posted == [Delivered("posted")] * 2


def _both_roles(url):
    """WH/Stock mirrors Odoo's moves; WH2/Stock is SAP's own: one connector with both capabilities."""
    return sap_mapping(url, role="system_of_record", location_roles={"WH/Stock": "mirror"})


def test_replay_the_happy_path_through_the_real_connector(tmp_path):
    url = "http://127.0.0.1:9/b1s/v1"  # nothing listens there: only the cassette can answer
    with recorder("none").use_cassette("happy_path.yaml") as cassette:
        sl = FakeServiceLayer(username="FILTERED", password="FILTERED")  # credentials only, never started
        sl._port = 9
        posted, figures = happy_path(connector_for(sl, tmp_path, mapping=_both_roles(url)))
    assert posted == [Delivered("posted")] * 2
    assert figures[("chair-blue", "WH/Stock")].on_hand == 997
    assert cassette.all_played
    paths = [r.path.rsplit("/", 1)[-1] for r in cassette.requests]
    assert paths == ["Login", "InventoryGenExits", "Items('CHAIR-BLUE')", "Logout"]


def test_no_secret_or_session_id_in_any_cassette():
    files = sorted(CASSETTES.glob("*.yaml"))
    assert files, "no cassettes: run with RECORD_CASSETTES=1"
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert USERNAME not in text and PASSWORD not in text, path.name
        assert not UUID.search(text), f"{path.name}: a session id survived the filters"
        assert re.findall(r"(B1SESSION|ROUTEID)=([^;\s'\"]+)", text) == [
            ("B1SESSION", "FILTERED"), ("ROUTEID", "FILTERED")], path.name
