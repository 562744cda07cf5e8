"""Inventory Visibility connector against the doubles (tests/fakes/d365_iv.py, azure_ad.py): the
two-step token, change events de-duplicated by id through replays and lost answers, bulk, 429,
token expiry at either step, refusals isolated to the bad event; on-hand reads as system of record."""
from __future__ import annotations

from decimal import Decimal

import pytest

from erp_bridge.domain import Count, Decrement, Delivered
from erp_bridge.errors import ConfigError, RejectedError, RetryableError
from tests.fakes.azure_ad import FakeAzureAd
from tests.fakes.d365_iv import AAD_SCOPE, ENVIRONMENT, FakeInventoryVisibility, iv_connector, iv_mapping
from tests.fakes.http_server import Fault
from tests.fakes.sap_b1 import move

DELIVERED = Delivered("sent (the service de-duplicates by id)")


@pytest.fixture
def aad(tmp_path_factory, monkeypatch):
    with FakeAzureAd(tmp_path_factory.mktemp("ca")) as fake:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake.ca_file))
        yield fake


@pytest.fixture
def iv(aad):
    with FakeInventoryVisibility(aad) as fake:
        fake.physical("CHAIR-BLUE", "1", "11", 100)
        yield fake


@pytest.fixture
def conn(iv):
    connector = iv_connector(iv)
    yield connector
    connector.close()


def pos(iv, product="CHAIR-BLUE", site="1", location="11") -> dict:
    return {k: v for k, v in iv.measures[(product, site, location)]["pos"].items()}


def test_the_token_is_the_documented_two_step_exchange(conn, iv, aad):
    assert conn.post_moves([move("1")]) == [DELIVERED]
    assert [r["scope"] for r in aad.token_requests] == [AAD_SCOPE]
    [(version, body)] = iv.token_requests
    assert version == "1.0" and body["context"] == ENVIRONMENT and body["client_assertion"] in aad.issued
    assert "app-secret-123" not in str(body)


def test_moves_go_as_one_bulk_and_count_once_through_a_replay(conn, iv):
    moves = [move("1", quantity="2"), move("2", direction="in", quantity="5")]
    assert conn.post_moves(moves) == [DELIVERED] * 2
    assert conn.post_moves(moves) == [DELIVERED] * 2  # a replay: the service de-duplicates the ids
    assert [path for path, _ in iv.received] == ["/onhand/bulk", "/onhand/bulk"]
    assert sorted(iv.counted) == ["odoo:move:1", "odoo:move:2"]
    assert pos(iv) == {"outbound": 2, "inbound": 5}


def test_a_lost_answer_is_sent_again_and_counted_once(conn, iv):
    iv.served.fail_next(Fault(drop="after_commit", path="/onhand/bulk"))
    moves = [move("1"), move("2")]
    assert all(isinstance(r, RetryableError) for r in conn.post_moves(moves))
    assert conn.post_moves(moves) == [DELIVERED] * 2
    assert pos(iv) == {"outbound": 2}


def test_throttling_is_retried_after_retry_after(conn, iv):
    iv.served.fail_next(Fault(429, {"Retry-After": "12"}, b"", path="/onhand"))
    [result] = conn.post_moves([move("1")])
    assert isinstance(result, RetryableError) and result.after == 12.0 and iv.counted == {}
    assert conn.post_moves([move("1")]) == [DELIVERED]


def test_a_bulk_refused_for_one_event_is_resent_one_by_one(iv):
    iv.refused_products.add("CHAIR-RED")
    connector = iv_connector(iv)
    results = connector.post_moves([move("1"), move("2", item="chair-red"), move("3")])
    assert results[0] == results[2] == DELIVERED
    assert isinstance(results[1], RejectedError) and results[1].status == 400
    assert "D365 error: One or more validation errors occurred. (productId: product CHAIR-RED" in str(results[1])
    assert sorted(iv.counted) == ["odoo:move:1", "odoo:move:3"]
    connector.close()


def test_an_expired_service_token_is_exchanged_again_with_the_cached_azure_ad_token(conn, iv, aad):
    conn.post_moves([move("1")])
    iv.expire_tokens()
    assert conn.post_moves([move("2")]) == [DELIVERED]
    assert len(iv.token_requests) == 2 and len(aad.token_requests) == 1


def test_an_expired_azure_ad_token_is_renewed_when_the_security_service_refuses_it(conn, iv, aad):
    conn.post_moves([move("1")])
    iv.expire_tokens()
    aad.expire_all()
    assert conn.post_moves([move("2")]) == [DELIVERED]
    assert len(aad.token_requests) == 2 and len(iv.token_requests) == 3


def test_the_security_service_redirect_is_followed(aad):
    with FakeInventoryVisibility(aad, redirect_first=True) as iv:
        connector = iv_connector(iv)
        assert connector.post_moves([move("1")]) == [DELIVERED]
        connector.close()


def test_a_wrong_environment_is_a_config_error_that_says_so(iv):
    mapping = iv_mapping(iv)
    mapping.connection.base_url = iv.api_url.replace(ENVIRONMENT, "11111111-2222-3333-4444-555555555555")
    connector = iv_connector(iv, mapping=mapping)
    [result] = connector.post_moves([move("1")])
    assert isinstance(result, ConfigError) and "environment id 11111111" in str(result)
    connector.close()


def test_a_wrong_client_secret_never_shows_the_secret(iv):
    connector = iv_connector(iv, client=("bridge-app", "wrong-secret-xyz"))
    [result] = connector.post_moves([move("1")])
    assert isinstance(result, ConfigError) and "wrong-secret-xyz" not in str(result)
    connector.close()


def test_on_hand_and_sales_as_system_of_record(iv):
    connector = iv_connector(iv, mapping=iv_mapping(iv, role="system_of_record"))
    sale = Decrement(channel="shopify", order="5001", line="1", item="chair-blue", location="WH/Stock",
                     quantity=Decimal(3))
    assert connector.apply_stock_changes([sale, sale]) == [DELIVERED] * 2
    figures = connector.read_availability([("chair-blue", "WH/Stock"), ("chair-red", "WH/Stock")])
    assert {k: (v.on_hand, v.free) for k, v in figures.items()} == {("chair-blue", "WH/Stock"): (97, 97)}
    [query] = [body for path, body in iv.received if path == "/onhand/indexquery"]
    assert query["filters"]["organizationId"] == ["usmf"] and query["groupByValues"] == ["siteId", "locationId"]
    count = Count(system="odoo", item="chair-blue", location="WH/Stock", quantity=Decimal(5), reference="inv-1")
    assert isinstance(connector.apply_stock_changes([count])[0], RejectedError)
    connector.close()


def test_the_event_id_must_be_the_event_key(iv):
    mapping = iv_mapping(iv)
    mapping.writes.idempotency.field = "eventId"
    with pytest.raises(ConfigError, match="strategy: body_id, field: id"):
        iv_connector(iv, mapping=mapping)


def test_no_secret_or_token_reaches_a_log_record(iv, aad, caplog):
    caplog.set_level("DEBUG")
    connector = iv_connector(iv)
    connector.post_moves([move("1")])
    iv.expire_tokens()
    connector.post_moves([move("2")])
    connector.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    secrets = ["app-secret-123", *aad.issued, *iv.tokens]
    assert caplog.records and not [s for s in secrets if s in logged]
