"""Dynamics 365 F&O OData connector against the doubles (tests/fakes/d365_finops.py, azure_ad.py):
journals as one $batch changeset, exactly once through lost answers, throttling and token expiry;
F&O's validation as a dead letter with its message; on-hand reads and sales as system of record."""
from __future__ import annotations

from decimal import Decimal

import pytest

from erp_bridge.domain import Count, Decrement, Delivered
from erp_bridge.errors import ConfigError, RejectedError, RetryableError
from tests.fakes.azure_ad import FakeAzureAd
from tests.fakes.clock import FakeClock
from tests.fakes.d365_finops import FakeFinOps, fo_connector, fo_mapping
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
        for item in ("CHAIR-BLUE", "CHAIR-RED", "007"):
            fake.stock(item, "11", 100)
            fake.stock(item, "21", 50)
        yield fake


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def d365(fo, tmp_path, clock):
    connector = fo_connector(fo, tmp_path, settle_s=30.0, clock=clock)
    yield connector
    connector.close()


def sale(order: str, quantity: str = "2", item: str = "chair-blue", location: str = "WH/Stock") -> Decrement:
    return Decrement(channel="shopify", order=order, line="1", item=item, location=location,
                     quantity=Decimal(quantity))


def test_moves_become_one_journal_with_header_and_lines(d365, fo):
    results = d365.post_moves([move("1", quantity="1.5"), move("2", direction="in", item="chair-red")])
    assert results == [Delivered("posted")] * 2
    [journal] = fo.journals()
    header = journal["header"]
    assert header["JournalNameId"] == "IMov" and header["dataAreaId"] == "usmf" and header["IsPosted"] == "No"
    assert header["Description"].startswith("bridge-doc:") and len(header["Description"]) <= 60
    assert [(line["ItemNumber"], line["InventoryWarehouseId"], line["InventorySiteId"], line["InventoryQuantity"])
            for line in journal["lines"]] == [("CHAIR-BLUE", "11", "1", Decimal("-1.5")), ("CHAIR-RED", "11", "1", 1)]


def test_the_audit_finds_each_journal_by_its_description_and_sees_a_copy(d365, fo, clock):
    d365.post_moves([move("1")])
    d365.post_moves([move("2")])
    audited = d365.audit_documents(clock() - 60, 100)
    assert [(intent.keys, len(ids)) for intent, ids in audited] == [(("odoo:move:1",), 1), (("odoo:move:2",), 1)]
    with fo.lock:  # someone copies the second journal in F&O, and deletes the first
        copy = {**fo.state.journals[1], "header": {**fo.state.journals[1]["header"], "JournalNumber": "IMV-999"}}
        fo.state.journals[:] = [fo.state.journals[1], copy]
    assert [len(ids) for _, ids in d365.audit_documents(clock() - 60, 100)] == [0, 2]


def test_a_replay_changes_nothing(d365, fo):
    d365.post_moves([move("1")])
    assert d365.post_moves([move("1")]) == [Delivered("duplicate")]
    assert len(fo.journals()) == 1


def test_a_lost_answer_is_settled_by_the_description_search(d365, fo):
    fo.served.fail_next(Fault(drop="after_commit", path="$batch"))
    [first] = d365.post_moves([move("1")])
    assert isinstance(first, RetryableError)
    assert d365.post_moves([move("1")]) == [Delivered("duplicate")]
    assert len(fo.journals()) == 1
    searches = [path for method, path, _ in fo.received if method == "GET"]
    assert len(searches) == 1 and "Description+eq+%27odoo%3Amove%3A1%27" in searches[0]


def test_a_journal_that_never_arrived_is_posted_again_after_the_settle_time(d365, fo, clock):
    fo.served.fail_next(Fault(drop="before", path="$batch"))
    assert isinstance(d365.post_moves([move("1")])[0], RetryableError)
    assert isinstance(d365.post_moves([move("1")])[0], RetryableError)  # may still be committing
    clock.advance(31)
    assert d365.post_moves([move("1")]) == [Delivered("posted")]
    assert len(fo.journals()) == 1


def test_throttling_429_is_retried_after_retry_after_and_creates_nothing(d365, fo):
    fo.served.fail_next(Fault(429, {"Retry-After": "7"}, b"", path="$batch"))
    [throttled, unsent] = d365.post_moves([move("1"), move("2", item="chair-red")])
    assert isinstance(throttled, RetryableError) and throttled.after == 7.0 and throttled.status == 429
    assert isinstance(unsent, RetryableError)
    assert fo.journals() == []
    assert d365.post_moves([move("1"), move("2", item="chair-red")]) == [Delivered("posted")] * 2
    assert len(fo.lines()) == 2


def test_an_expired_token_is_renewed_once_and_the_journal_goes_through(d365, fo, aad):
    d365.post_moves([move("1")])
    aad.expire_all()
    assert d365.post_moves([move("2")]) == [Delivered("posted")]
    assert len(aad.token_requests) == 2 and len(fo.journals()) == 2


def test_validation_refusal_dead_letters_only_the_bad_move_with_f_and_o_s_message(d365, fo):
    results = d365.post_moves([move("1"), move("2", item="no-such-item")])
    assert results[0] == Delivered("posted")
    assert isinstance(results[1], RejectedError) and results[1].status == 400
    assert "Item number NO-SUCH-ITEM does not exist" in str(results[1])
    assert "stacktrace" not in str(results[1]) and "app-secret" not in str(results[1])
    assert [line["ItemNumber"] for line in fo.lines()] == ["CHAIR-BLUE"]  # the refused changeset left nothing


def test_an_unmapped_location_is_refused_before_sending(d365, fo):
    [result] = d365.post_moves([move("1", location="WH9/Stock")])
    assert isinstance(result, RejectedError) and "WH9/Stock" in str(result)
    assert fo.received == []


def test_a_long_key_is_hashed_to_fit_description_and_still_found(d365, fo):
    long_id = "x" * 80
    fo.served.fail_next(Fault(drop="after_commit", path="$batch"))
    d365.post_moves([move(long_id)])
    assert d365.post_moves([move(long_id)]) == [Delivered("duplicate")]
    [journal] = fo.journals()
    assert len(journal["header"]["Description"]) == 51


def test_wrong_client_secret_is_a_config_error_without_the_secret(fo, tmp_path):
    from tests.fakes import d365_finops
    d365_finops.CLIENT, saved = ("bridge-app", "not-the-secret"), d365_finops.CLIENT
    try:
        connector = fo_connector(fo, tmp_path)
        [result] = connector.post_moves([move("1")])
    finally:
        d365_finops.CLIENT = saved
    assert isinstance(result, ConfigError) and "AADSTS7000215" in str(result)
    assert "not-the-secret" not in str(result) and "d365_client_secret" in str(result)
    connector.close()


# --- system of record -------------------------------------------------------------------------------
@pytest.fixture
def sor(fo, tmp_path):
    connector = fo_connector(fo, tmp_path, mapping=fo_mapping(fo, role="system_of_record"))
    yield connector
    connector.close()


def test_on_hand_is_read_per_warehouse(sor):
    figures = sor.read_availability([("chair-blue", "WH/Stock"), ("chair-red", "WH2/Stock"), ("nothing", "WH/Stock")])
    assert {k: (v.on_hand, v.free) for k, v in figures.items()} == {
        ("chair-blue", "WH/Stock"): (100, 100), ("chair-red", "WH2/Stock"): (50, 50)}


def test_a_sale_reserves_at_once_and_posting_moves_on_hand(sor, fo):
    assert sor.apply_stock_changes([sale("5001", "3")]) == [Delivered("posted")]
    before = sor.read_availability([("chair-blue", "WH/Stock")])[("chair-blue", "WH/Stock")]
    assert (before.on_hand, before.reserved, before.free) == (100, 3, 97)
    assert sor.apply_stock_changes([sale("5001", "3")]) == [Delivered("duplicate")]
    fo.post_journals()
    after = sor.read_availability([("chair-blue", "WH/Stock")])[("chair-blue", "WH/Stock")]
    assert (after.on_hand, after.reserved, after.free) == (97, 0, 97)


def test_counts_are_refused_with_a_reason(sor):
    [result] = sor.apply_stock_changes([Count(system="odoo", item="chair-blue", location="WH/Stock",
                                              quantity=Decimal(5), reference="inv-1")])
    assert isinstance(result, RejectedError) and "not counts" in str(result)


def test_on_hand_pages_are_followed(fo, tmp_path):
    fo.page_size = 1
    connector = fo_connector(fo, tmp_path, mapping=fo_mapping(fo, role="system_of_record"))
    figures = connector.read_availability([("chair-blue", "WH/Stock"), ("chair-blue", "WH2/Stock")])
    assert {k: v.on_hand for k, v in figures.items()} == {("chair-blue", "WH/Stock"): 100,
                                                          ("chair-blue", "WH2/Stock"): 50}
    assert sum(1 for method, path, _ in fo.received if "WarehousesOnHandV2" in path) == 2
    connector.close()


def test_a_company_mismatch_is_refused_at_start(fo, tmp_path):
    mapping = fo_mapping(fo)
    mapping.connection.database = "demf"
    with pytest.raises(ConfigError, match=r"dataAreaId other than connection\.database"):
        fo_connector(fo, tmp_path, mapping=mapping)
