"""SAP B1 as a system of record: availability from Items(...)/ItemWarehouseInfoCollection, and
channel decrements/increments as goods issues/receipts, once each."""
from __future__ import annotations

from decimal import Decimal

import pytest

from erp_bridge.connectors import registry
from erp_bridge.connectors.base import Capability
from erp_bridge.domain import Count, Decrement, Delivered, Increment
from erp_bridge.errors import RejectedError, RetryableError
from erp_bridge.settings import Settings
from tests.fakes.sap_b1 import FakeServiceLayer, Fault, connector_for, sap_mapping


@pytest.fixture
def sl():
    with FakeServiceLayer() as fake:
        fake.stock("CHAIR-BLUE", "01", 10, committed=3, ordered=5)
        fake.stock("CHAIR-BLUE", "02", 4)
        fake.stock("A00007", "01", 30, committed=6)
        yield fake


@pytest.fixture
def sap(sl, tmp_path):
    connector = connector_for(sl, tmp_path, mapping=sap_mapping(sl.url, role="system_of_record"))
    yield connector
    connector.close()


def figures(result):
    return {k: (a.on_hand, a.reserved, a.free, a.forecast) for k, a in result.items()}


@pytest.mark.parametrize("key, expected", [
    (("chair-blue", "WH/Stock"), (10, 3, 7, 12)),
    (("chair-blue", "WH2/Stock"), (4, 0, 4, 4)),
    (("007", "WH/Stock"), (30, 6, 24, 24)),
], ids=["instock-committed-ordered", "second-warehouse", "override-code"])
def test_read_availability_maps_codes_back_to_internal_terms(sap, key, expected):
    assert figures(sap.read_availability([key])) == {key: tuple(Decimal(n) for n in expected)}


@pytest.mark.parametrize("key", [("ghost", "WH/Stock"), ("chair-blue", "Nowhere/Stock")],
                         ids=["item-unknown-in-sap", "location-not-mapped"])
def test_unknown_keys_are_absent_not_zero(sap, key):
    assert sap.read_availability([key, ("chair-blue", "WH/Stock")]).keys() == {("chair-blue", "WH/Stock")}


def test_one_read_per_item_with_select(sap, sl):
    sap.read_availability([("chair-blue", "WH/Stock"), ("chair-blue", "WH2/Stock")])
    reads = [r for r in sl.received if r.path.startswith("Items")]
    assert [(r.path, r.query) for r in reads] == [("Items('CHAIR-BLUE')", {"$select": "ItemCode,ItemWarehouseInfoCollection"})]


def test_unit_factor_converts_sap_quantities_to_internal_units(sl, tmp_path):
    mapping = sap_mapping(sl.url, role="system_of_record")
    units = mapping.units.model_copy(update={"items": {"chair-blue": mapping.units.uoms["Dozens"]}})
    sap = connector_for(sl, tmp_path, mapping=mapping.model_copy(update={"units": units}))
    assert figures(sap.read_availability([("chair-blue", "WH2/Stock")])) == {
        ("chair-blue", "WH2/Stock"): (Decimal(4) / 12, 0, Decimal(4) / 12, Decimal(4) / 12)}


def test_sap_down_fails_the_whole_read(sap, sl):
    sl.fail_next(Fault(503, {"Retry-After": "5"}, path="Items"))
    with pytest.raises(RetryableError) as caught:
        sap.read_availability([("chair-blue", "WH/Stock")])
    assert caught.value.after == 5


def sale(order, item="chair-blue", quantity=2, location="WH/Stock"):
    return Decrement(channel="shopify", order=order, line="1", item=item, location=location, quantity=Decimal(quantity))


def test_decrements_and_increments_become_issues_and_receipts_once(sap, sl):
    cancel = Increment(channel="shopify", order="1", line="1", item="chair-blue", location="WH/Stock", quantity=Decimal(2))
    count = Count(system="pos", item="chair-blue", location="WH/Stock", quantity=Decimal(5), reference="c1")
    outcomes = sap.apply_stock_changes([sale("1"), count, cancel, sale("2", item="ghost")])
    assert outcomes[0] == outcomes[2] == Delivered("posted")
    assert str(outcomes[1]) == "sap_b1 takes decrements and increments, not absolute counts"
    assert isinstance(outcomes[3], RejectedError) and "Item 'GHOST' not found" in str(outcomes[3])
    assert sap.apply_stock_changes([sale("1"), cancel]) == [Delivered("duplicate")] * 2
    assert [d["Comments"] for d in sl.documents["InventoryGenExits"]] == ["erp-bridge shopify order 1 line 1"]
    assert sl.items["CHAIR-BLUE"]["01"]["InStock"] == 10


@pytest.mark.parametrize("role, capabilities", [
    # read and audited for reconciliation
    ("mirror", {Capability.POST_MOVES, Capability.READ_AVAILABILITY, Capability.AUDIT_DOCUMENTS}),
    ("system_of_record", {Capability.READ_AVAILABILITY, Capability.APPLY_STOCK_CHANGES, Capability.AUDIT_DOCUMENTS}),
], ids=["mirror", "system-of-record"])
def test_capabilities_follow_the_role_in_the_mapping(sl, tmp_path, role, capabilities):
    settings = Settings(data_dir=str(tmp_path), secrets={"sap_b1_user": "manager", "sap_b1_password": "secret"})
    connector = registry.build(sap_mapping(sl.url, role=role), settings)
    assert connector.capabilities == capabilities
    assert connector.ledger.storage_url == settings.queue_url  # the ledger lives with the queue
    connector.close()
