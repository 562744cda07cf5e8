"""Every SOAP envelope the netsuite connector sent in a realistic session, validated with lxml against
the SuiteTalk 2023_2 XSDs in ../shared/specs/netsuite-wsdl-2023_2 (header entries and body element),
plus what the XSDs cannot say: SOAP 1.1, one TokenPassport per envelope signed HMAC-SHA256, records
upserted by externalId without internalId (Oracle: upsert "prohibits the passing of internal ID
values"). The validator is shown to refuse a broken envelope."""
from __future__ import annotations

from decimal import Decimal

import pytest
from lxml import etree

from erp_bridge.domain import Decrement
from tests.fakes.netsuite import (
    NS,
    SPECS,
    FakeNetSuite,
    Fault,
    connector_for,
    move,
    netsuite_mapping,
    validate_envelope,
)

pytestmark = pytest.mark.skipif(not SPECS.exists(), reason="../shared/specs is not present")


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """Moves both ways, a sale as system of record, a lost answer and its replay, a paged read."""
    from erp_bridge.connectors.netsuite import connector as soap_connector
    with FakeNetSuite() as ns, pytest.MonkeyPatch.context() as patch:
        patch.setattr(soap_connector, "PAGE_SIZE", 5)
        for n, item in enumerate(("20", "21", "307")):
            ns.put_stock(item, "1", 100)
            ns.put_stock(item, "2", 10 + n)
        mapping = netsuite_mapping(ns.url, role="system_of_record", locations={"map": [
            {"internal": "WH/Stock", "code": "1"}, {"internal": "WH2/Stock", "code": "2", "role": "mirror"}]})
        conn = connector_for(ns, tmp_path_factory.mktemp("contract"), mapping=mapping)
        conn.post_moves([move("1", quantity="1.5", location="WH2/Stock"), move("2", direction="in", item="007",
                                                                              location="WH2/Stock")])
        ns.fail_next(Fault(operation="upsertList", drop="after_commit"))
        sale = Decrement(channel="shopify", order="1001", line="1", item="chair-red", location="WH/Stock",
                         quantity=Decimal(2))
        conn.apply_stock_changes([sale])
        conn.apply_stock_changes([sale])
        conn.read_availability([(sku, loc) for sku in ("chair-blue", "chair-red", "007")
                                for loc in ("WH/Stock", "WH2/Stock")])
        conn.close()
        return list(ns.envelopes), list(ns.operations)


def test_the_session_used_every_operation(captured):
    _, operations = captured
    assert operations == ["upsertList", "upsertList", "upsertList", "search", "searchMoreWithId"]


def test_every_envelope_is_valid_against_the_xsds(captured):
    envelopes, _ = captured
    assert [validate_envelope(e) for e in envelopes] == [[]] * len(envelopes)


def test_every_envelope_carries_one_signed_token_passport(captured):
    for content in captured[0]:
        header = etree.fromstring(content).find("soap:Header", NS)
        passports = header.findall("msgs:tokenPassport", NS)
        assert len(passports) == 1
        assert passports[0].find("core:signature", NS).get("algorithm") == "HMAC-SHA256"
        assert 6 <= len(passports[0].findtext("core:nonce", namespaces=NS)) <= 64


def test_records_are_upserted_by_external_id_only(captured):
    records = [r for e in captured[0]
               for r in etree.fromstring(e).iterfind("soap:Body/msgs:upsertList/msgs:record", NS)]
    assert len(records) == 4
    assert all(r.get("externalId") and r.get("internalId") is None for r in records)
    assert {r.get("externalId") for r in records} == {"odoo-3Amove-3A1", "odoo-3Amove-3A2", "shopify-3A1001-3A1"}
    assert all(r.find("inv:inventoryList", NS).get("replaceAll") == "true" for r in records)


def test_the_validator_refuses_what_netsuite_would(captured):
    broken = captured[0][0].replace(b"<ns6:adjustQtyBy>", b"<ns6:adjustQuantityBy>").replace(
        b"</ns6:adjustQtyBy>", b"</ns6:adjustQuantityBy>")
    assert broken != captured[0][0]
    assert any("adjustQuantityBy" in error for error in validate_envelope(broken))
    no_signature = captured[0][0].replace(b'algorithm="HMAC-SHA256"', b"")
    assert any("algorithm" in error for error in validate_envelope(no_signature))
