"""Dynamics 365 over real HTTP: SQLite queue -> Dispatcher -> dynamics365 / dynamics365_iv connector ->
the doubles (Azure AD over TLS, F&O OData, Inventory Visibility). Through a service that is down for
a while, a lost answer, a crash after sending (a new connector on the same storage), a throttled burst
(429 + Retry-After) and a token expiring mid-run, every move reaches each target exactly once; a bad
item dead-letters with F&O's own message; as system of record a channel sale is applied once. The
queue and the ledger run on one fake clock, so backoff and settle windows are stepped, not slept."""
from __future__ import annotations

import json
import os
import re
import time
from decimal import Decimal
from pathlib import Path

import pytest
import vcr
from prometheus_client import CollectorRegistry

from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.dispatch.metrics import DispatchMetrics
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import Decrement, Delivered
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from tests.fakes.azure_ad import FakeAzureAd
from tests.fakes.clock import FakeClock
from tests.fakes.d365_finops import FakeFinOps, fo_connector, fo_mapping
from tests.fakes.d365_iv import FakeInventoryVisibility, iv_connector, iv_mapping
from tests.fakes.http_server import Fault
from tests.fakes.sap_b1 import move


@pytest.fixture
def aad(tmp_path_factory, monkeypatch):
    with FakeAzureAd(tmp_path_factory.mktemp("ca")) as fake:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake.ca_file))
        yield fake


@pytest.fixture
def fo(aad):
    with FakeFinOps(aad) as fake:
        for item in ("CHAIR-BLUE", "CHAIR-RED"):
            fake.stock(item, "11", 1000)
        yield fake


@pytest.fixture
def iv(aad):
    with FakeInventoryVisibility(aad) as fake:
        fake.physical("CHAIR-BLUE", "1", "11", 100)
        yield fake


@pytest.fixture
def clock():
    return FakeClock(time.time())


@pytest.fixture
def queue(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=10, base_s=1, jitter=0), clock=clock)
    yield q
    q.close()


def dispatcher_for(queue, connector) -> Dispatcher:
    return Dispatcher(queue, {connector.name: connector}, metrics=DispatchMetrics(CollectorRegistry()), batch_size=16)


def settle(dispatcher, queue, clock, rounds=60):
    for _ in range(rounds):
        if not dispatcher.run_once("w"):
            if not any(s.depth[State.PENDING] or s.depth[State.LEASED] for s in queue.stats()):
                return
            clock.advance(30)
    raise AssertionError("queue did not settle")


def moves(n: int):
    return [move(str(i), item=("chair-blue", "chair-red")[i % 2], quantity=i) for i in range(1, n + 1)]


def test_f_and_o_every_move_once_through_outage_lost_answer_crash_throttling_and_expiry(fo, aad, queue, clock,
                                                                                        tmp_path):
    first = fo_connector(fo, tmp_path, mapping=fo_mapping(fo, timeout_s=1.0, batch_size=4), settle_s=5, clock=clock)
    entries = [queue.enqueue([entry_for("dynamics365", m)])[0] for m in moves(12)]
    fo.served.down()
    dispatcher = dispatcher_for(queue, first)
    for _ in range(2):
        dispatcher.run_once("w")
        clock.advance(30)
    fo.served.up()
    fo.served.fail_next(Fault(drop="after_commit", path="$batch"))  # the answer is lost, the journal stays
    dispatcher.run_once("w")
    first.close()  # the worker dies; a new one starts on the same storage (ledger)
    second = fo_connector(fo, tmp_path, mapping=fo_mapping(fo, timeout_s=1.0, batch_size=4), settle_s=5, clock=clock)
    fo.served.fail_next(*[Fault(429, {"Retry-After": "20"}, b"", path="$batch") for _ in range(3)])
    aad.expire_all()
    settle(dispatcher_for(queue, second), queue, clock)
    second.close()
    assert {queue.get(e.id).state for e in entries} == {State.DONE}
    assert sorted(line["InventoryQuantity"] for line in fo.lines()) == sorted(-i for i in range(1, 13))
    assert len(aad.token_requests) >= 2


def test_f_and_o_a_bad_item_dead_letters_with_the_entity_message(fo, queue, clock, tmp_path):
    connector = fo_connector(fo, tmp_path, mapping=fo_mapping(fo, timeout_s=1.0), clock=clock)
    good, bad = (queue.enqueue([entry_for("dynamics365", m)])[0] for m in (move("1"), move("2", item="no-such")))
    settle(dispatcher_for(queue, connector), queue, clock)
    connector.close()
    assert queue.get(good.id).state is State.DONE
    dead = queue.get(bad.id)
    assert dead.state is State.DEAD
    assert dead.last_error == ("RejectedError: HTTP 400 from POST $batch InventoryMovementJournalHeaders: D365 error: "
                               "Write failed for table row of type 'InventJournalTrans'. Infolog: Error: Item number "
                               "NO-SUCH does not exist.")
    assert [line["ItemNumber"] for line in fo.lines()] == ["CHAIR-BLUE"]


def test_f_and_o_as_system_of_record_applies_a_channel_sale_once(fo, queue, clock, tmp_path):
    connector = fo_connector(fo, tmp_path, mapping=fo_mapping(fo, role="system_of_record", timeout_s=1.0), clock=clock)
    sale = Decrement(channel="shopify", order="5001", line="1", item="chair-blue", location="WH/Stock",
                     quantity=Decimal(3))
    queue.enqueue([entry_for("dynamics365", sale)])
    fo.served.fail_next(Fault(drop="after_commit", path="$batch"))
    settle(dispatcher_for(queue, connector), queue, clock)
    queue.enqueue([entry_for("dynamics365", sale)])  # the webhook delivered twice
    settle(dispatcher_for(queue, connector), queue, clock)
    figure = connector.read_availability([("chair-blue", "WH/Stock")])[("chair-blue", "WH/Stock")]
    connector.close()
    assert len(fo.journals()) == 1 and (figure.on_hand, figure.free) == (1000, 997)


def test_inventory_visibility_every_event_once_through_outage_lost_answer_and_throttling(iv, queue, clock):
    connector = iv_connector(iv, mapping=iv_mapping(iv, batch_size=5))
    entries = [queue.enqueue([entry_for("dynamics365_iv", m)])[0] for m in moves(12)]
    iv.served.down()
    dispatcher = dispatcher_for(queue, connector)
    dispatcher.run_once("w")
    clock.advance(30)
    iv.served.up()
    iv.served.fail_next(Fault(drop="after_commit", path="/onhand/bulk"),
                        Fault(429, {"Retry-After": "15"}, b"", path="/onhand/bulk"))
    iv.expire_tokens()
    settle(dispatcher, queue, clock)
    connector.close()
    assert {queue.get(e.id).state for e in entries} == {State.DONE}
    assert sorted(iv.counted) == sorted(f"odoo:move:{i}" for i in range(1, 13))
    outbound = sum(level["pos"]["outbound"] for level in iv.measures.values())
    assert outbound == sum(range(1, 13))


def test_inventory_visibility_as_system_of_record_applies_a_channel_sale_once(iv, queue, clock):
    connector = iv_connector(iv, mapping=iv_mapping(iv, role="system_of_record"))
    sale = Decrement(channel="shopify", order="5001", line="1", item="chair-blue", location="WH/Stock",
                     quantity=Decimal(4))
    for _ in range(2):  # delivered twice by the channel
        queue.enqueue([entry_for("dynamics365_iv", sale)])
        settle(dispatcher_for(queue, connector), queue, clock)
    figure = connector.read_availability([("chair-blue", "WH/Stock")])[("chair-blue", "WH/Stock")]
    connector.close()
    assert list(iv.counted) == ["shopify:5001:1"] and figure.free == 96


# --- cassettes ----------------------------------------------------------------------------------
CASSETTES = Path(__file__).resolve().parents[1] / "cassettes" / "dynamics365"
SECRET = "app-secret-123"


def _scrub_request(request):
    if request.body and b"client_secret=" in request.body:
        request.body = re.sub(rb"client_secret=[^&]*", b"client_secret=FILTERED", request.body)
        request.headers.pop("Content-Length", None)  # would tell the secret's length
    return request


def _scrub_response(response):
    body = response["body"].get("string") or b""
    if b"access_token" in body:
        data = json.loads(body)
        data["access_token"] = "FILTERED"
        response["body"]["string"] = json.dumps(data).encode()
    return response


def recorder(record_mode):
    return vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode=record_mode,
                   match_on=("method", "path", "query"),  # the doubles' ports change every run
                   filter_headers=["Authorization"], before_record_request=_scrub_request,
                   before_record_response=_scrub_response, decode_compressed_response=True)


def happy_path(connector):
    posted = connector.post_moves([move("4711", quantity=3), move("4712", item="chair-red", direction="in")])
    figures = connector.read_availability([("chair-blue", "WH/Stock")])
    connector.close()
    return posted, figures


def _both_roles(fo):
    return fo_mapping(fo, role="system_of_record", location_roles={"WH/Stock": "mirror"})


@pytest.mark.skipif(os.environ.get("RECORD_CASSETTES") != "1", reason="set RECORD_CASSETTES=1 to re-record")
def test_record_the_happy_path_cassette(fo, tmp_path):
    (CASSETTES / "happy_path.yaml").unlink(missing_ok=True)
    with recorder("once").use_cassette("happy_path.yaml"):
        posted, _ = happy_path(fo_connector(fo, tmp_path, mapping=_both_roles(fo)))
    assert posted == [Delivered("posted")] * 2


def test_replay_the_happy_path_through_the_real_connector(tmp_path, monkeypatch):
    """Nothing listens on port 9: only the cassette answers (msal's discovery, the token, the
    $batch, the on-hand read)."""
    from erp_bridge.connectors.dynamics365.finops import from_context
    from erp_bridge.connectors.runtime.context import ConnectorContext
    from erp_bridge.mapping.schema import SystemMapping
    from erp_bridge.yamlpos import load_yaml_file

    data = load_yaml_file(Path(__file__).resolve().parents[2] / "mappings" / "dynamics365.yaml").data
    data["connection"].update(base_url="http://127.0.0.1:9/data", timeout_s=2)
    data["connection"]["auth"].update(authority="https://127.0.0.1:9/72f988bf-86f1-41af-91ab-2d7cd011db47",
                                      scope="http://127.0.0.1:9/.default")
    data["role"] = "system_of_record"
    data["locations"]["map"][0]["role"] = "mirror"
    mapping = SystemMapping.model_validate(data)
    secrets = {"d365_client_id": "bridge-app", "d365_client_secret": "FILTERED"}
    with recorder("none").use_cassette("happy_path.yaml") as cassette:
        connector = from_context(ConnectorContext(mapping, secrets.__getitem__, {}, f"sqlite:///{tmp_path}/q.db"))
        posted, figures = happy_path(connector)
    assert posted == [Delivered("posted")] * 2
    assert figures[("chair-blue", "WH/Stock")].on_hand == 1000  # unposted journals do not move on-hand
    assert cassette.all_played
    assert [r.path.rsplit("/", 1)[-1] for r in cassette.requests] == [
        "openid-configuration", "token", "$batch", "WarehousesOnHandV2"]


def test_no_secret_or_token_in_any_cassette():
    files = sorted(CASSETTES.glob("*.yaml"))
    assert files, "no cassettes: run with RECORD_CASSETTES=1"
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert SECRET not in text and "eyJ0eX" not in text, path.name
        assert "client_secret=FILTERED" in text and "access_token" in text, path.name
