"""The idempotency ledger and the pushed figures on both storage engines: SQLite (the queue's
file) and PostgreSQL (the database every host shares). What one host records, another sees, so
a move SAP committed while its answer was lost is never posted again from another host.

PostgreSQL cases skip, with the reason, when no server is reachable (tests/pg.py)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from erp_bridge.connectors.runtime.ledger import Ledger, document_key, prune
from erp_bridge.domain import Delivered
from erp_bridge.errors import RetryableError
from erp_bridge.sync.figures import FigureStore
from tests.fakes.clock import FakeClock
from tests.fakes.sap_b1 import FakeServiceLayer, Fault, connector_for, move
from tests.pg import fresh_schema


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/queue.sqlite3"
    else:
        yield from fresh_schema()


def other_host(storage: str) -> str:
    """The same storage as another host opens it (its own file handle or connection pool)."""
    if storage.startswith("sqlite"):
        return storage
    return storage + "&application_name=other-host"


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000.0)


def test_claim_done_drop_round_trip(storage, clock):
    ledger = Ledger(storage, "sap_b1", clock=clock)
    doc = document_key(["m1", "m2"])
    assert ledger.claim(doc, "InventoryGenExits", ["m2", "m1", "m1"])
    assert ledger.intents_for(["m1"]) == ledger.intents_for(["m2", "m9"])
    [intent] = ledger.intents_for(["m1"])
    assert (intent.keys, intent.doc_entry, intent.created_at) == (("m1", "m2"), None, clock())
    ledger.done(doc, 42)
    assert ledger.intents_for(["m2"])[0].doc_entry == "42"
    ledger.drop(doc)
    assert ledger.intents_for(["m1", "m2"]) == []
    assert ledger.claim(doc, "InventoryGenExits", ["m1"])  # free again
    ledger.close()


def test_recent_lists_confirmed_documents_since_a_time_oldest_first(storage, clock):
    ledger = Ledger(storage, "sap_b1", clock=clock)
    for n in range(3):
        ledger.claim(f"d{n}", "InventoryGenExits", [f"m{n}", f"m{n}b"])
        clock.advance(10)
    ledger.done("d0", 1)
    ledger.done("d2", 3)  # d1 is unconfirmed (a lost answer not settled yet): not listed
    assert [(i.document_key, i.keys, i.doc_entry) for i in ledger.recent(0, 10)] == [
        ("d0", ("m0", "m0b"), "1"), ("d2", ("m2", "m2b"), "3")]
    assert [i.document_key for i in ledger.recent(clock() - 15, 10)] == ["d2"]
    assert [i.document_key for i in ledger.recent(0, 1)] == ["d0"]
    assert Ledger(other_host(storage), "zoho").recent(0, 10) == []  # per system


def test_a_key_claimed_on_one_host_cannot_be_claimed_on_another(storage, clock):
    a, b = Ledger(storage, "sap_b1", clock=clock), Ledger(other_host(storage), "sap_b1", clock=clock)
    assert a.claim("doc-a", "InventoryGenExits", ["m1", "m2"])
    assert not b.claim("doc-b", "InventoryGenExits", ["m2", "m3"])  # m2 is held
    assert [i.document_key for i in b.intents_for(["m3", "m2"])] == ["doc-a"]
    assert b.claim("doc-c", "InventoryGenExits", ["m3"])  # nothing of doc-b was left behind
    assert Ledger(other_host(storage), "zoho", clock=clock).claim("doc-a", "adjustment", ["m1"])  # per system
    a.close(), b.close()


def test_prune_forgets_only_finished_documents_past_the_retention(storage, clock):
    ledger = Ledger(storage, "sap_b1", clock=clock)
    ledger.claim("finished", "k", ["m1"])
    ledger.done("finished", 7)
    ledger.claim("unknown", "k", ["m2"])  # its answer was lost: it must stay to settle it
    assert prune(storage, older_than_s=3600, clock=clock) == 0
    clock.advance(3601)
    assert prune(storage, older_than_s=3600, clock=clock) == 1
    assert ledger.intents_for(["m1"]) == [] and len(ledger.intents_for(["m2"])) == 1
    ledger.close()


def test_sap_move_committed_while_its_answer_was_lost_is_not_posted_again_by_another_host(storage, tmp_path, clock):
    with FakeServiceLayer() as sl:
        sl.stock("CHAIR-BLUE", "01", 100)
        host_a = connector_for(sl, tmp_path / "a", clock=clock, settle_s=30.0, storage=storage)
        sl.fail_next(Fault(drop="after_commit", path="InventoryGenExits"))
        assert all(isinstance(o, RetryableError) for o in host_a.post_moves([move("1"), move("2")]))
        host_a.close()  # host A is gone; its lease expires and host B takes the moves
        host_b = connector_for(sl, tmp_path / "b", clock=clock, settle_s=30.0, storage=other_host(storage))
        assert host_b.post_moves([move("2"), move("1")]) == [Delivered("duplicate")] * 2
        assert len(sl.documents["InventoryGenExits"]) == 1 and len(sl.lines()) == 2
        host_b.close()


def test_figures_are_shared_by_every_host_and_replaced_in_place(storage, clock):
    a, b = FigureStore(storage, clock=clock), FigureStore(other_host(storage), clock=clock)
    assert a.get("shop", "SKU", "WH") is None
    a.put("shop", "SKU", "WH", Decimal("5"))
    assert b.get("shop", "SKU", "WH") == Decimal("5")
    b.put("shop", "SKU", "WH", Decimal("2.5"))
    assert a.get("shop", "SKU", "WH") == Decimal("2.5") and a.get("pos", "SKU", "WH") is None
    a.close(), b.close()
