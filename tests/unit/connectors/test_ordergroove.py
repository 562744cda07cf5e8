"""What is Ordergroove's own: the HMAC authorization header, the live flag with hysteresis, the
per-product results of one Bulk Update, the 100-product limit, and what a refusal tells the
operator. Requests go to the double (tests/fakes/ordergroove.py), a real HTTP server."""
from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from erp_bridge.connectors.ordergroove import Threshold, authorization, signature
from erp_bridge.domain import Delivered, Figure
from erp_bridge.errors import ConfigError, RejectedError, RetryableError
from erp_bridge.mapping.schema import QuantityPolicy
from tests.fakes.ordergroove import (
    HASH_KEY,
    PRODUCTS,
    PUBLIC_ID,
    SECRETS,
    SIG_FIELD,
    FakeOrdergroove,
    connector_for,
    og_mapping,
)
from tests.fakes.served import Fault
from tests.pg import fresh_schema

BLUE, RED = PRODUCTS["chair-blue"], PRODUCTS["chair-red"]


def figure(quantity: int, sku: str = "chair-blue") -> Figure:
    return Figure(item=sku, location="WH/Stock", quantity=Decimal(quantity))


@pytest.fixture
def og():
    with FakeOrdergroove() as double:
        yield double


# --- the authorization header ---------------------------------------------------------------

def test_the_signature_matches_an_independent_hmac_implementation():
    # printf '%s' 'merchant-level-77|1700000000' | openssl dgst -sha256 -hmac '<HASH_KEY>' -binary | base64
    assert signature(HASH_KEY, SIG_FIELD, 1700000000) == "XMC0zTG6z/FOxq3Cft5eF+bELQtwQ7bAIOgec7rPCus="


def test_the_header_is_the_guides_json_object_with_an_integer_ts():
    header = json.loads(authorization(PUBLIC_ID, SIG_FIELD, HASH_KEY, 1700000000))
    assert header == {"public_id": PUBLIC_ID, "ts": 1700000000, "sig_field": SIG_FIELD,
                      "sig": "XMC0zTG6z/FOxq3Cft5eF+bELQtwQ7bAIOgec7rPCus="}


def test_every_request_is_signed_afresh_and_the_double_accepts_it(og, tmp_path):
    now = [time.time() - 7000]  # a process started almost two hours ago
    connector = connector_for(og, tmp_path, clock=lambda: now[0])
    connector.push_availability([figure(0)])
    now[0] += 7000  # its first signature is stale by now: a new one is made per request
    og.live[BLUE] = False
    connector.push_availability([figure(10)])
    stamps = [json.loads(r.headers["authorization"])["ts"] for r in og.received]
    assert [r.status for r in og.received] == [200, 200] and stamps[1] - stamps[0] == 7000
    assert all(r.headers["og-authorization"] == "True" for r in og.received)


@pytest.mark.parametrize("clock_offset_s, hash_key", [(0, "not-the-key"), (-3 * 3600, HASH_KEY)],
                         ids=["forged", "stale"])
def test_a_refused_signature_is_a_config_error_naming_the_secrets_never_their_values(og, tmp_path, clock_offset_s,
                                                                                    hash_key, monkeypatch):
    monkeypatch.setitem(SECRETS, "ordergroove_hash_key", hash_key)
    connector = connector_for(og, tmp_path, clock=lambda: time.time() + clock_offset_s)
    [outcome] = connector.push_availability([figure(0)])
    assert isinstance(outcome, ConfigError) and "ordergroove_hash_key" in str(outcome)
    assert hash_key not in str(outcome) and og.applied == []


# --- hysteresis -----------------------------------------------------------------------------

def test_a_figure_hovering_at_the_threshold_sends_one_false_and_does_not_flap(og, tmp_path):
    connector = connector_for(og, tmp_path, mapping=og_mapping(og, policy={"low_stock_threshold": 2,
                                                                           "low_stock_hysteresis": 2}))
    outcomes = [connector.push_availability([figure(q)])[0] for q in (2, 3, 2, 3)]
    assert og.flags_sent() == [(BLUE, False)] and len(og.received) == 1
    assert all(isinstance(o, Delivered) for o in outcomes)
    connector.push_availability([figure(4)])  # threshold + hysteresis: back on, once
    connector.push_availability([figure(5)])
    assert og.flags_sent() == [(BLUE, False), (BLUE, True)]


POLICY = QuantityPolicy(basis="free", low_stock_threshold=Decimal(2), low_stock_hysteresis=Decimal(2))


@pytest.mark.parametrize("quantity, shown, live", [
    (0, True, False), (2, True, False), (2, None, False), (3, True, True), (3, False, False), (3, None, True),
    (4, False, True), (4, None, True), (Decimal("2.5"), False, False),
], ids=["out of stock", "at threshold", "at threshold unknown", "band keeps live", "band keeps off",
        "band unknown: above threshold", "back on", "back on unknown", "fraction in band"])
def test_the_live_decision(quantity, shown, live):
    assert Threshold.of(POLICY).live(Decimal(quantity), shown) is live


def test_without_a_threshold_only_out_of_stock_turns_a_product_off():
    threshold = Threshold.of(QuantityPolicy(basis="free"))
    assert [threshold.live(Decimal(q), None) for q in (0, 1)] == [False, True]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/queue.sqlite3"
    else:
        yield from fresh_schema()


def test_the_flag_is_shared_by_processes_and_survives_a_restart(og, tmp_path, storage):
    first = connector_for(og, tmp_path, storage=storage)
    first.push_availability([figure(1)])
    first.close()
    again = connector_for(og, tmp_path, storage=storage)  # a new process (or another host) on the same storage
    assert isinstance(again.push_availability([figure(3)])[0], Delivered)  # in the band: stays off
    assert og.flags_sent() == [(BLUE, False)]
    assert again.push_availability([figure(4)])[0] == Delivered("live: true")
    assert connector_for(og, tmp_path, storage=storage).push_availability([figure(3)])[0] == \
        Delivered(f"unchanged: product {BLUE} stays live")


# --- one answer, one outcome per product ----------------------------------------------------

def test_mixed_results_become_one_outcome_per_product(og, tmp_path):
    og.refuse.add(RED)
    mapping = og_mapping(og)
    mapping.items.overrides.append(mapping.items.overrides[0].model_copy(update={"sku": "ghost", "code": "404-me"}))
    connector = connector_for(og, tmp_path, mapping=mapping)
    blue, red, ghost = connector.push_availability([figure(0), figure(0, "chair-red"), figure(0, "ghost")])
    assert blue == Delivered("live: false") and len(og.received) == 1
    assert isinstance(red, RejectedError) and "product 166603786142092351 (SKU chair-red) (400)" in str(red)
    assert "discontinued" in str(red)
    assert isinstance(ghost, RejectedError) and "has no product 404-me (SKU ghost) (404)" in str(ghost)
    assert "mappings/ordergroove.yaml" in str(ghost)
    assert og.live == {BLUE: False, RED: True}


def test_a_sku_without_a_product_is_refused_without_a_request(og, tmp_path):
    [outcome] = connector_for(og, tmp_path).push_availability([figure(0, "no-such-sku")])
    assert isinstance(outcome, RejectedError) and "no Ordergroove product for SKU no-such-sku" in str(outcome)
    assert og.received == []


def test_more_than_100_products_go_in_calls_of_100(og, tmp_path):
    mapping = og_mapping(og)
    extra = {f"sku-{n}": f"p-{n}" for n in range(150)}
    for sku, code in extra.items():
        mapping.items.overrides.append(mapping.items.overrides[0].model_copy(update={"sku": sku, "code": code}))
        og.live[code] = True
    outcomes = connector_for(og, tmp_path, mapping=mapping).push_availability([figure(0, s) for s in extra])
    assert all(o == Delivered("live: false") for o in outcomes)
    assert [len(json.loads(r.body)) for r in og.received] == [100, 50]


def test_the_double_refuses_101_products(og):
    import requests
    body = json.dumps([{"product_id": str(n), "live": False} for n in range(101)])
    headers = {"authorization": authorization(PUBLIC_ID, SIG_FIELD, HASH_KEY, int(time.time())),
               "og-authorization": "True", "content-type": "application/json"}
    answer = requests.patch(og.url + "/products-batch/update/", data=body, headers=headers, timeout=5)
    assert answer.status_code == 400 and "at most 100" in answer.json()["detail"]


def test_429_is_retried_after_the_vendors_delay_and_the_rest_is_not_attempted(og, tmp_path):
    og.quota = 0
    mapping = og_mapping(og, batch_size=1)
    outcomes = connector_for(og, tmp_path, mapping=mapping).push_availability([figure(0), figure(0, "chair-red")])
    assert isinstance(outcomes[0], RetryableError) and outcomes[0].after == 1.0
    assert isinstance(outcomes[1], RetryableError) and len(og.received) == 1


def test_a_5xx_and_a_lost_answer_are_retried_and_the_flag_is_sent_again(og, tmp_path):
    connector = connector_for(og, tmp_path)
    og.fail_next(Fault(503, body={"detail": "Service unavailable"}), Fault(200, drop="after_commit"))
    assert isinstance(connector.push_availability([figure(0)])[0], RetryableError)
    assert isinstance(connector.push_availability([figure(0)])[0], RetryableError)  # applied, answer lost
    assert connector.push_availability([figure(0)])[0] == Delivered("live: false")
    assert og.flags_sent() == [(BLUE, False), (BLUE, False)]  # the same absolute flag twice: harmless
    assert connector.push_availability([figure(0)])[0] == Delivered(f"unchanged: product {BLUE} stays off")


def test_a_refusal_of_the_whole_request_names_ordergroove_s_reason(og, tmp_path):
    og.fail_next(Fault(403, body={"detail": "You do not have permission to perform this action."}))
    [outcome] = connector_for(og, tmp_path).push_availability([figure(0)])
    assert isinstance(outcome, RejectedError) and "permission" in str(outcome)
    assert "hash key" in str(outcome) and HASH_KEY not in str(outcome)


def test_the_factory_refuses_another_auth_kind(og, tmp_path):
    mapping = og_mapping(og)
    mapping.connection.auth = mapping.connection.auth.model_copy(update={"kind": "bearer"})
    with pytest.raises(ConfigError, match="ordergroove_hmac"):
        connector_for(og, tmp_path, mapping=mapping)


def test_the_registry_builds_it_from_the_example_mapping_with_the_vendors_throttle(tmp_path):
    from erp_bridge.connectors import registry
    from erp_bridge.connectors.ordergroove import OrdergrooveConnector
    from erp_bridge.mapping.schema import SystemMapping
    from erp_bridge.yamlpos import load_yaml_file
    from tests.fakes.ordergroove import MAPPING_FILE
    mapping = SystemMapping.model_validate(load_yaml_file(MAPPING_FILE).data)
    assert (mapping.limits.rate_per_s, mapping.limits.burst) == (10, 10)  # 600 requests/min (Bulk Update)
    connector = registry.build(mapping, SECRETS, storage_url=f"sqlite:///{tmp_path}/queue.sqlite3")
    assert isinstance(connector, OrdergrooveConnector) and connector.capabilities == {"push_availability"}
    connector.close()
