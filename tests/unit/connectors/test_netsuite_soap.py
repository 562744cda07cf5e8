"""NetSuite over SuiteTalk SOAP, on the XSD-validating double: moves and channel sales upserted once
by externalId whatever is replayed, one outcome per record from its statusDetail, availability
from a paged item search, faults classified by what the operator must do, no secret in errors."""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC
from decimal import Decimal

import pytest

from erp_bridge.connectors.base import Capability
from erp_bridge.connectors.netsuite import connector as soap_connector
from erp_bridge.connectors.netsuite.ids import event_key, external_id
from erp_bridge.connectors.netsuite.passport import TbaCredentials, TbaPassport, signature
from erp_bridge.domain import Count, Decrement, Delivered, Increment
from erp_bridge.errors import ConfigError, MappingError, RejectedError, RetryableError
from tests.fakes.netsuite import FakeNetSuite, Fault, connector_for, move, netsuite_mapping


@pytest.fixture
def ns():
    with FakeNetSuite() as fake:
        fake.put_stock("20", "1", 10, committed=3)
        fake.put_stock("20", "2", 4)
        fake.put_stock("21", "1", 7)
        yield fake
        assert fake.invalid == [], "an envelope broke the 2023_2 XSDs"


@pytest.fixture
def conn(ns, tmp_path):
    connector = connector_for(ns, tmp_path)
    yield connector
    connector.close()


def sale(order: str, quantity=1, item="chair-blue"):
    return Decrement(channel="shopify", order=order, line="1", item=item, location="WH/Stock",
                     quantity=Decimal(quantity))


def test_token_passport_signature_matches_an_independent_hmac():
    creds = TbaCredentials("1234567_SB1", "c" * 64, "d" * 64, "e" * 64, "f" * 64)
    base = b"1234567_SB1&" + b"c" * 64 + b"&" + b"e" * 64 + b"&A1b2C3d4E5&1700000000"
    expected = base64.b64encode(hmac.new(b"d" * 64 + b"&" + b"f" * 64, base, hashlib.sha256).digest()).decode()
    assert signature(creds, "A1b2C3d4E5", "1700000000") == expected
    header = TbaPassport(creds, nonce=lambda: "A1b2C3d4E5", timestamp=lambda: "1700000000").header()
    assert header["signature"] == {"_value_1": expected, "algorithm": "HMAC-SHA256"}
    assert header["timestamp"] == 1700000000


def test_secret_with_characters_netsuite_never_issues_is_refused_without_echo():
    names = {r: f"ns_{r}" for r in ("account", "consumer_key", "consumer_secret", "token_id", "token_secret")}
    values = {**{n: "abc" for n in names.values()}, "ns_token_secret": "with space&amp"}
    with pytest.raises(ConfigError, match="secret ns_token_secret holds characters") as caught:
        TbaCredentials.from_secrets(names, values.__getitem__)
    assert "with space" not in str(caught.value)


@pytest.mark.parametrize("key", ["odoo:move:42", "shopify:1001:1", "a-b_c", "ünï/cødé"], ids=str)
def test_external_ids_use_only_what_netsuite_accepts_and_map_back(key):
    eid = external_id(key)
    assert set(eid) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    assert event_key(eid) == key


def test_capabilities_follow_the_role(ns, tmp_path):
    sor = connector_for(ns, tmp_path, mapping=netsuite_mapping(ns.url, role="system_of_record"))
    assert sor.capabilities == {Capability.READ_AVAILABILITY, Capability.APPLY_STOCK_CHANGES}
    sor.close()


def test_a_move_becomes_one_adjustment_and_a_replay_updates_it(conn, ns):
    assert conn.post_moves([move("42", quantity="2.5")]) == [Delivered("upserted inventoryAdjustment 1000")]
    assert conn.post_moves([move("42", quantity="2.5")]) == [Delivered("upserted inventoryAdjustment 1000")]
    assert list(ns.adjustments) == ["odoo-3Amove-3A42"]
    assert ns.adjustments["odoo-3Amove-3A42"].lines == [("20", "1", Decimal("-2.5"))]
    assert ns.on_hand("20", "1") == Decimal("7.5")


def test_a_lost_answer_is_retried_onto_the_same_record(conn, ns):
    ns.fail_next(Fault(operation="upsertList", drop="after_commit"))
    first = conn.post_moves([move("7", quantity=3)])
    assert isinstance(first[0], RetryableError)
    assert conn.post_moves([move("7", quantity=3)]) == [Delivered("upserted inventoryAdjustment 1000")]
    assert len(ns.adjustments) == 1 and ns.on_hand("20", "1") == 7


def test_one_outcome_per_record_from_its_status_detail(conn, ns):
    ns.items.discard("21")  # chair-red's item was deleted in NetSuite
    results = conn.post_moves([move("1"), move("2", item="chair-red"), move("3", direction="in", location="WH2/Stock")])
    assert results[0] == Delivered("upserted inventoryAdjustment 1000")
    assert isinstance(results[1], RejectedError)
    assert str(results[1]) == "netsuite refused odoo-3Amove-3A2: INVALID_KEY_OR_REF: Invalid item reference key 21."
    assert isinstance(results[2], Delivered) and ns.on_hand("20", "2") == 5
    assert ns.operations == ["upsertList"]  # one request for the three records


def test_unmapped_item_and_count_are_refused_alone(ns, tmp_path):
    sor = connector_for(ns, tmp_path, mapping=netsuite_mapping(ns.url, role="system_of_record"))
    count = Count(system="odoo", reference="inv-1", item="chair-blue", location="WH/Stock", quantity=Decimal(3))
    results = sor.apply_stock_changes([sale("1", item="ghost"), count, sale("2")])
    assert isinstance(results[0], RejectedError) and "item 'ghost' has no netsuite id" in str(results[0])
    assert isinstance(results[1], RejectedError) and "not absolute counts" in str(results[1])
    assert results[2] == Delivered("upserted inventoryAdjustment 1000")
    sor.close()


def test_an_unknown_record_type_is_refused_at_start(ns, tmp_path):
    data = netsuite_mapping(ns.url).model_dump(by_alias=True, exclude_none=True, exclude_unset=True)
    data["requests"]["adjustment"]["path"] = "/InventoryAdjustments"
    with pytest.raises(ConfigError, match="NetSuite has no record type InventoryAdjustments"):
        connector_for(ns, tmp_path, mapping=type(netsuite_mapping(ns.url)).model_validate(data))


def test_a_body_field_the_record_does_not_have_is_a_mapping_error(ns, tmp_path):
    mapping = netsuite_mapping(ns.url, extra_body={"adjustmentQuantity": {"field": "quantity"}})
    conn = connector_for(ns, tmp_path, mapping=mapping)
    [result] = conn.post_moves([move("1")])
    assert isinstance(result, MappingError) and "adjustmentQuantity" in str(result)
    assert ns.operations == []
    conn.close()


def test_channel_sales_apply_once_through_redelivery(ns, tmp_path):
    sor = connector_for(ns, tmp_path, mapping=netsuite_mapping(ns.url, role="system_of_record"))
    refund = Increment(channel="shopify", order="1001", line="r1", item="chair-blue", location="WH/Stock",
                       quantity=Decimal(1), reason="refund")
    assert all(isinstance(r, Delivered) for r in sor.apply_stock_changes([sale("1001", 2), sale("1001", 2), refund]))
    assert all(isinstance(r, Delivered) for r in sor.apply_stock_changes([sale("1001", 2)]))  # a webhook redelivered
    assert ns.on_hand("20", "1") == 9  # 10 - 2 + 1
    assert sorted(ns.adjustments) == ["shopify-3A1001-3A1", "shopify-3A1001-3Ar1-3Arefund"]
    sor.close()


def test_records_go_in_upsert_lists_of_at_most_the_limit(conn, ns, monkeypatch):
    monkeypatch.setattr(soap_connector, "UPSERT_LIST_MAX", 2)
    ns.max_records = 2
    assert all(isinstance(r, Delivered) for r in conn.post_moves([move(str(n)) for n in range(5)]))
    assert ns.operations == ["upsertList"] * 3 and ns.on_hand("20", "1") == 5


def test_too_many_records_for_netsuite_is_refused_with_its_fault(conn, ns):
    ns.max_records = 1
    results = conn.post_moves([move("1"), move("2")])
    assert all(isinstance(r, RejectedError) for r in results)
    assert all("exceededRecordCountFault EXCEEDED_MAX_RECORDS" in str(r) for r in results)


@pytest.mark.parametrize("fault, kind, words", [
    (Fault(fault_name="exceededConcurrentRequestLimitFault", code="WS_REQUEST_BLOCKED", message="limit"),
     RetryableError, "concurrency limit is shared"),
    (Fault(fault_name="exceededRequestLimitFault", code="WS_CONCUR_SESSION_DISALLWD", message="limit"), RetryableError,
     "WS_CONCUR_SESSION_DISALLWD"),
    (Fault(fault_name="unexpectedErrorFault", code="UNEXPECTED_ERROR", message="oops"), RetryableError,
     "UNEXPECTED_ERROR"),
    (Fault(fault_name="insufficientPermissionFault", code="INSUFFICIENT_PERMISSION",
           message="Permission Violation: You need the 'Adjust Inventory' permission"), ConfigError,
     "Adjust Inventory"),
    (Fault(fault_name="invalidVersionFault", code="INVALID_VERSION", message="old"), ConfigError, "WSDL version"),
    (Fault(status=429, body="<html>Too Many Requests</html>", headers={"Retry-After": "7"}), RetryableError,
     "HTTP 429"),
    (Fault(status=503, body="<html>down</html>"), RetryableError, "HTTP 503"),
    (Fault(status=500, body="<html>proxy error</html>"), RetryableError, "not a SOAP answer"),
], ids=["concurrent-tba", "concurrent-session", "unexpected", "permission", "version", "429", "503", "500-html"])
def test_faults_are_classified_by_what_to_do(conn, ns, fault, kind, words):
    ns.fail_next(fault)
    [result] = conn.post_moves([move("1")])
    assert isinstance(result, kind) and words in str(result)
    if fault.status == 429:
        assert result.after == 7


def test_invalid_login_is_a_configuration_error_without_secrets(ns, tmp_path):
    conn = connector_for(ns, tmp_path)
    secrets = ns.creds[1:]
    ns.creds = (*ns.creds[:4], "ab" * 32)  # the token was revoked and issued again
    [result] = conn.post_moves([move("1")])
    assert isinstance(result, ConfigError)
    assert "INVALID_LOGIN_ATTEMPT" in str(result) and "Login Audit Trail" in str(result)
    assert not any(secret in str(result) for secret in secrets)
    conn.close()


def test_every_envelope_has_a_fresh_nonce(conn, ns):
    conn.post_moves([move("1")])
    conn.post_moves([move("1")])
    assert len(ns.nonces) == 2


def test_availability_from_one_paged_item_search(ns, tmp_path, monkeypatch):
    monkeypatch.setattr(soap_connector, "PAGE_SIZE", 5)
    for n in range(30, 42):
        ns.put_stock(str(n), "1", n, committed=1)
    mapping = netsuite_mapping(ns.url, role="system_of_record",
                               items={"overrides": [{"sku": f"sku-{n}", "code": str(n)} for n in range(20, 42)],
                                      "unlisted": "error"})
    conn = connector_for(ns, tmp_path, mapping=mapping)
    keys = [(f"sku-{n}", "WH/Stock") for n in range(30, 42)] + [("sku-20", "WH2/Stock"), ("sku-20", "WH/Stock")]
    figures = conn.read_availability(keys + [("ghost", "WH/Stock"), ("sku-25", "WH/Stock")])
    assert set(figures) == set(keys)  # unknown SKU and an item without stock rows are absent
    assert (figures[("sku-20", "WH/Stock")].on_hand, figures[("sku-20", "WH/Stock")].free) == (10, 7)
    assert figures[("sku-41", "WH/Stock")].free == 40
    assert ns.operations == ["search", "searchMoreWithId", "searchMoreWithId"]  # 14 rows, pages of 5
    conn.close()


ACCOUNT_WSDL = "https://1234567.suitetalk.api.netsuite.com/wsdl/v2023_2_0/netsuite.wsdl"


def test_the_account_wsdl_is_derived_from_the_endpoint():
    from erp_bridge.connectors.netsuite.soap import default_wsdl
    assert default_wsdl("https://1234567.suitetalk.api.netsuite.com/services/NetSuitePort_2023_2") == ACCOUNT_WSDL


def test_the_account_wsdl_loads_from_the_disk_cache_without_network(ns, tmp_path):
    from tests.fakes.netsuite import seed_wsdl_cache
    seed_wsdl_cache(tmp_path / "cache", ACCOUNT_WSDL)  # what the first start fetched, next to the queue
    data = netsuite_mapping(ns.url).model_dump(by_alias=True, exclude_none=True, exclude_unset=True)
    data["connection"]["wsdl"] = ACCOUNT_WSDL
    conn = connector_for(ns, tmp_path, mapping=type(netsuite_mapping(ns.url)).model_validate(data))
    assert conn.post_moves([move("1")]) == [Delivered("upserted inventoryAdjustment 1000")]
    conn.close()


def test_an_unreachable_wsdl_is_a_configuration_error_naming_the_key(ns, tmp_path):
    data = netsuite_mapping(ns.url).model_dump(by_alias=True, exclude_none=True, exclude_unset=True)
    data["connection"]["wsdl"] = "http://127.0.0.1:9/wsdl/v2023_2_0/netsuite.wsdl"
    with pytest.raises(ConfigError, match="cannot load the NetSuite WSDL from http://127.0.0.1:9/.*connection.wsdl"):
        connector_for(ns, tmp_path, mapping=type(netsuite_mapping(ns.url)).model_validate(data))


def test_preview_masks_every_credential(ns):
    from datetime import datetime

    from erp_bridge.connectors.netsuite import describe
    text = describe(netsuite_mapping(ns.url), {}, [move("42")], now=datetime(2026, 11, 30, tzinfo=UTC))
    assert "<ns0:upsertList" in text and 'externalId="odoo-3Amove-3A42"' in text
    assert 'algorithm="HMAC-SHA256">***</' in text
    assert not any(secret in text for secret in ns.creds)
