"""SAP B1 as a mirror: moves -> goods issues/receipts, several lines per document, each move
posted exactly once across lost responses, crashes and regrouping (ledger + U_BridgeKey search)."""
from __future__ import annotations

import pytest

from erp_bridge.connectors.runtime.ledger import Ledger, document_key, prune
from erp_bridge.domain import Delivered
from erp_bridge.errors import NotAttempted, RejectedError, RetryableError, Throttled
from tests.fakes.clock import FakeClock
from tests.fakes.sap_b1 import FakeServiceLayer, Fault, connector_for, move, sap_mapping

POSTED, DUPLICATE = Delivered("posted"), Delivered("duplicate")


@pytest.fixture
def sl():
    with FakeServiceLayer() as fake:
        for item in ("CHAIR-BLUE", "CHAIR-RED", "A00007"):
            fake.stock(item, "01", 100)
            fake.stock(item, "02", 100)
        yield fake


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def sap(sl, tmp_path, clock):
    connector = connector_for(sl, tmp_path, clock=clock, settle_s=30.0)
    yield connector
    connector.close()


def documents(sl, entity="InventoryGenExits"):
    return [(d["U_BridgeKey"], [(l["ItemCode"], l["Quantity"]) for l in d["DocumentLines"]])
            for d in sl.documents[entity]]


def test_moves_share_documents_up_to_batch_size_by_direction(sl, tmp_path):
    sap = connector_for(sl, tmp_path, mapping=sap_mapping(sl.url, batch_size=2))
    moves = [move("1"), move("2", direction="in"), move("3", item="chair-red"), move("4"), move("5", quantity=2, direction="in", uom="Dozens", item="007")]
    assert sap.post_moves(moves) == [POSTED] * 5
    keys = lambda *ids: document_key(f"odoo:move:{i}" for i in ids)
    assert documents(sl) == [(keys(1, 3), [("CHAIR-BLUE", 1), ("CHAIR-RED", 1)]), (keys(4), [("CHAIR-BLUE", 1)])]
    assert documents(sl, "InventoryGenEntries") == [(keys(2, 5), [("CHAIR-BLUE", 1), ("A00007", 24)])]


def test_document_key_is_the_same_for_the_same_moves_in_any_order():
    assert document_key(["b", "a", "c"]) == document_key(["c", "b", "a", "a"]) != document_key(["a", "b"])
    assert document_key(["odoo:move:7"]) == "odoo:move:7" and len(document_key(["x" * 300])) <= 254


def test_replayed_batch_posts_nothing_twice(sl, sap):
    assert sap.post_moves([move("1"), move("2")]) == [POSTED] * 2
    assert sap.post_moves([move("2"), move("1"), move("3")]) == [DUPLICATE, DUPLICATE, POSTED]
    assert len(sl.lines()) == 3 and len(sl.posted()) == 2


def test_response_lost_after_commit_then_moves_come_back_regrouped(sl, sap):
    sl.fail_next(Fault(drop="after_commit", path="InventoryGenExits"))
    first = sap.post_moves([move("1"), move("2"), move("3")])
    assert all(isinstance(o, RetryableError) for o in first)
    assert len(sl.documents["InventoryGenExits"]) == 1  # SAP created it; the bridge never heard
    # the lease hands them back split up and mixed with new moves, in two batches
    assert sap.post_moves([move("3"), move("4")]) == [DUPLICATE, POSTED]
    assert sap.post_moves([move("2"), move("1"), move("5")]) == [DUPLICATE, DUPLICATE, POSTED]
    assert sorted(q for _, lines in documents(sl) for _, q in lines) == [1] * 5
    searches = [r for r in sl.received if r.method == "GET" and r.path == "InventoryGenExits"]
    assert len(searches) == 1  # found once, then the ledger knows the DocEntry


def test_lost_request_that_sap_never_committed_is_posted_again_after_the_settle_window(sl, sap, clock):
    sl.fail_next(Fault(drop="before", path="InventoryGenExits"))
    assert all(isinstance(o, RetryableError) for o in sap.post_moves([move("1"), move("2")]))
    held = sap.post_moves([move("1")])[0]
    assert isinstance(held, RetryableError) and held.after == pytest.approx(30.0)
    assert sl.documents["InventoryGenExits"] == []
    clock.advance(31)
    assert sap.post_moves([move("2"), move("1")]) == [POSTED] * 2
    assert len(sl.lines()) == 2


def test_server_error_keeps_the_intent_and_a_retry_searches_first(sl, sap, clock):
    sl.fail_next(Fault(500, body={"error": {"code": -1, "message": {"lang": "en-us", "value": "oops"}}},
                       path="InventoryGenExits"))
    outcome = sap.post_moves([move("1")])[0]
    assert str(outcome) == "HTTP 500 from POST InventoryGenExits: SAP error -1: oops"
    clock.advance(31)
    assert sap.post_moves([move("1")]) == [POSTED]
    assert [r.method for r in sl.received if r.path == "InventoryGenExits"] == ["POST", "GET", "POST"]


@pytest.mark.parametrize(("fault", "kind"), [
    (Fault(503, {"Retry-After": "9"}, path="InventoryGenExits"), RetryableError),
    (Fault(429, {"Retry-After": "9"}, path="InventoryGenExits"), Throttled),
], ids=["503", "429"])
def test_throttled_document_frees_its_moves_and_holds_back_the_rest(sl, tmp_path, fault, kind):
    sap = connector_for(sl, tmp_path, mapping=sap_mapping(sl.url, batch_size=1), settle_s=30.0)
    sl.fail_next(fault)
    first, second = sap.post_moves([move("1"), move("2")])
    assert (type(first), first.after, type(second), second.after) == (kind, 9, NotAttempted, 9)
    assert sap.post_moves([move("1"), move("2")]) == [POSTED] * 2  # no settle wait: nothing was created


def test_sap_down_is_retryable_and_nothing_is_held(sl, sap):
    sap.post_moves([move("0")])  # logged in while up
    sl.down()
    outcomes = sap.post_moves([move("1"), move("2")])
    assert all(isinstance(o, RetryableError) for o in outcomes)
    sl.up()
    assert sap.post_moves([move("1"), move("2")]) == [POSTED] * 2


@pytest.mark.parametrize("bad, reason", [
    (move("9", item="ghost"), "SAP error -5002: Item 'GHOST' not found [DocumentLines.ItemCode][line: 1]"),
    (move("9", location="Nowhere/Stock"),
     "cannot map to sap_b1: location 'Nowhere/Stock' is not mapped in sap_b1 (locations.map)"),
    (move("9", quantity=500), "SAP error -10: Quantity falls into negative inventory [DocumentLines.ItemCode][line: 1]"),
], ids=["item-unknown-in-sap", "location-not-mapped", "negative-stock"])
def test_a_bad_move_is_rejected_alone_and_the_others_are_posted(sl, sap, bad, reason):
    outcomes = sap.post_moves([move("1"), bad, move("2")])
    assert outcomes[0] == outcomes[2] == POSTED
    assert isinstance(outcomes[1], RejectedError) and str(outcomes[1]).endswith(reason)
    assert len(sl.lines()) == 2
    assert sap.post_moves([move("1"), move("2")]) == [DUPLICATE] * 2


def test_item_unlisted_error_in_the_mapping_rejects_only_that_move(sl, tmp_path):
    mapping = sap_mapping(sl.url)
    mapping = mapping.model_copy(update={"items": mapping.items.model_copy(update={"unlisted": "error"})})
    sap = connector_for(sl, tmp_path, mapping=mapping)
    outcomes = sap.post_moves([move("1", item="007"), move("2", item="chair-blue")])
    assert outcomes[0] == POSTED
    assert str(outcomes[1]) == "cannot map to sap_b1: item 'chair-blue' has no sap_b1 id (not in items.overrides or the lookup table)"


def test_another_attempt_holding_the_moves_makes_this_one_wait(sl, sap, tmp_path, clock):
    other = Ledger(f"sqlite:///{tmp_path}/queue.sqlite3", "sap_b1", clock=clock)  # a second worker process
    assert other.claim(document_key(["odoo:move:1"]), "InventoryGenExits", ["odoo:move:1"])
    outcome = sap.post_moves([move("1")])[0]
    assert isinstance(outcome, RetryableError) and "may still be committing" in str(outcome)
    assert sl.posted() == []
    other.close()


def test_the_ledger_survives_a_restart(sl, tmp_path, clock):
    first = connector_for(sl, tmp_path, clock=clock)
    sl.fail_next(Fault(drop="after_commit", path="InventoryGenExits"))
    first.post_moves([move("1"), move("2")])
    first.close()  # the process dies; a new one opens the same data_dir
    second = connector_for(sl, tmp_path, clock=clock)
    assert second.post_moves([move("2")]) == [DUPLICATE]
    assert len(sl.lines()) == 2
    second.close()


def test_prune_forgets_posted_documents_past_the_retention_only(sap, sl, clock):
    assert sap.post_moves([move("1")]) == [Delivered("posted")]
    assert [i.keys for i in sap.ledger.intents_for(["odoo:move:1"])] == [("odoo:move:1",)]
    storage = sap.ledger.storage_url
    assert prune(storage, older_than_s=3600, clock=clock) == 0  # posted just now
    clock.advance(3601)
    assert prune(storage, older_than_s=3600, clock=clock) == 1
    assert sap.ledger.intents_for(["odoo:move:1"]) == []
