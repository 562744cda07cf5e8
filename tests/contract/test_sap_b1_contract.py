"""What the sap_b1 connector sends, captured by the fake Service Layer, against the documented
shapes of ../shared/reference/vendor-apis.md §1: Login body; goods issue/receipt documents with
DocDate (YYYY-MM-DD), Comments, DocumentLines [{ItemCode, Quantity, WarehouseCode}] and nothing
else at the top level but the configured UDF; searches by that UDF; Items reads with $select."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest

from tests.fakes.sap_b1 import FakeServiceLayer, connector_for, move, sap_mapping

DOCUMENTED_HEADER = {"DocDate", "Comments", "DocumentLines"}
DOCUMENTED_LINE = {"ItemCode", "Quantity", "WarehouseCode", "UnitPrice", "AccountCode", "BatchNumbers",
                   "SerialNumbers", "DocumentLinesBinAllocations"}
REQUIRED_LINE = {"ItemCode": str, "Quantity": (int, float, Decimal), "WarehouseCode": str}
UDF = "U_BridgeKey"


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """Everything the connector sent in one realistic session: moves both ways, a replay after a
    lost response (a search), a read, then shutdown."""
    from tests.fakes.sap_b1 import Fault
    with FakeServiceLayer() as sl:
        for item in ("CHAIR-BLUE", "A00007"):
            sl.stock(item, "01", 100)
        mapping = sap_mapping(sl.url, role="system_of_record", location_roles={"WH/Stock": "mirror"})
        sap = connector_for(sl, tmp_path_factory.mktemp("contract"), mapping=mapping, settle_s=0)
        sap.post_moves([move("1", quantity="1.5"), move("2", direction="in", item="007", uom="Dozens")])
        sl.fail_next(Fault(drop="after_commit", path="InventoryGenExits"))
        sap.post_moves([move("3")])
        sap.post_moves([move("3")])
        sap.read_availability([("chair-blue", "WH/Stock")])
        sap.close()
        return list(sl.received)


def documents(captured):
    return [r for r in captured if r.method == "POST" and r.path in ("InventoryGenExits", "InventoryGenEntries")]


def test_login_body_is_exactly_the_documented_one(captured):
    logins = [r for r in captured if r.path == "Login"]
    assert [sorted(r.body) for r in logins] == [["CompanyDB", "Password", "UserName"]]
    assert all(isinstance(v, str) for v in logins[0].body.values())


def test_documents_have_the_documented_header_and_the_udf_only(captured):
    docs = documents(captured)
    assert {d.path for d in docs} == {"InventoryGenExits", "InventoryGenEntries"}
    for doc in docs:
        assert set(doc.body) <= DOCUMENTED_HEADER | {UDF}, set(doc.body) - DOCUMENTED_HEADER
        assert {"DocDate", "DocumentLines", UDF} <= set(doc.body)
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", doc.body["DocDate"])
        assert isinstance(doc.body[UDF], str) and 0 < len(doc.body[UDF]) <= 254


def test_document_lines_have_required_fields_with_the_right_types(captured):
    lines = [line for doc in documents(captured) for line in doc.body["DocumentLines"]]
    assert lines
    for line in lines:
        assert set(line) <= DOCUMENTED_LINE
        for name, kind in REQUIRED_LINE.items():
            assert isinstance(line[name], kind) and not isinstance(line[name], bool), (name, line)
    assert [line["Quantity"] for line in lines] == [Decimal("1.5"), 12, 1]  # numbers; 1 Dozens -> 12


def test_search_filters_on_the_udf_and_selects_docentry(captured):
    searches = [r for r in captured if r.method == "GET" and r.path == "InventoryGenExits"]
    assert [r.query for r in searches] == [{"$filter": f"{UDF} eq 'odoo:move:3'", "$select": "DocEntry"}]


def test_item_read_selects_the_warehouse_collection(captured):
    reads = [r for r in captured if r.path.startswith("Items(")]
    assert [(r.method, r.path, r.query) for r in reads] == [
        ("GET", "Items('CHAIR-BLUE')", {"$select": "ItemCode,ItemWarehouseInfoCollection"})]


def test_every_call_after_login_carries_both_cookies_and_the_session_ends_with_logout(captured):
    after_login = [r for r in captured if r.path != "Login"]
    assert all(set(r.cookies) >= {"B1SESSION", "ROUTEID"} for r in after_login)
    assert (after_login[-1].method, after_login[-1].path) == ("POST", "Logout")
