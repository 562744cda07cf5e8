"""WooCommerce push over real HTTP against the fake (tests/fakes/woocommerce.py): batch endpoints per
product and per parent, 100 objects a call, partial batch failures, 401/429/5xx/timeouts, units."""
from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from erp_bridge.domain import Delivered, Figure
from erp_bridge.errors import ConfigError, NotAttempted, RejectedError, RetryableError
from tests.fakes.woocommerce import KEY, SECRET, Fault, connector_for, stocked_shop


@pytest.fixture
def shop():
    with stocked_shop() as s:
        yield s


def figure(sku: str, quantity: str, location: str = "WH/Stock") -> Figure:
    return Figure(sku, location, Decimal(quantity), idempotency_key=f"odoo:availability:{sku}@{location}:1")


def sent(shop) -> list[tuple[str, dict]]:
    return [(r["path"], json.loads(r["body"])) for r in shop.requests]


def test_products_and_variations_go_to_their_own_batch_endpoints(shop, tmp_path):
    connector = connector_for(shop.url, tmp_path / "m")
    results = connector.push_availability([figure("chair-blue", "5"), figure("mug-s", "2.9"), figure("mug-l", "0")])
    assert results == [Delivered("set")] * 3
    assert sent(shop) == [
        ("/wp-json/wc/v3/products/batch", {"update": [{"id": 101, "manage_stock": True, "stock_quantity": 5}]}),
        ("/wp-json/wc/v3/products/230/variations/batch", {"update": [
            {"id": 231, "manage_stock": True, "stock_quantity": 2},
            {"id": 232, "manage_stock": True, "stock_quantity": 0}]}),
    ]
    assert (shop.stock("101"), shop.stock("230:231"), shop.stock("230:232")) == (5, 2, 0)


def test_a_large_push_goes_out_in_calls_of_at_most_100(shop, tmp_path):
    items = {f"sku-{n}": str(1000 + n) for n in range(250)}
    for n in range(250):
        shop.add_product(1000 + n, f"sku-{n}", 0)
    connector = connector_for(shop.url, tmp_path / "m", extra_items=items)
    results = connector.push_availability([figure(sku, "3") for sku in items])
    assert results == [Delivered("set")] * 250
    assert [len(body["update"]) for _, body in sent(shop)] == [100, 100, 50]


def test_one_unknown_id_fails_alone_in_its_batch(shop, tmp_path):
    connector = connector_for(shop.url, tmp_path / "m", extra_items={"gone": "999"})
    results = connector.push_availability([figure("chair-blue", "4"), figure("gone", "1"), figure("chair-red", "2")])
    assert results[0] == results[2] == Delivered("set")
    assert isinstance(results[1], RejectedError)
    assert str(results[1]) == ("WooCommerce refused SKU gone (/products/999): woocommerce_rest_product_invalid_id: "
                               "Invalid ID.")
    assert (shop.stock("101"), shop.stock("102")) == (4, 2)


def test_an_unlisted_sku_or_location_is_refused_naming_the_file_and_sends_nothing(shop, tmp_path):
    connector = connector_for(shop.url, tmp_path / "m")
    unlisted, elsewhere = connector.push_availability([figure("table-oak", "1"),
                                                       figure("chair-blue", "1", "WH3/Stock")])
    assert isinstance(unlisted, RejectedError) and "SKU table-oak" in str(unlisted)
    assert "mappings/woocommerce.yaml" in str(unlisted) and "lookup table" in str(unlisted)
    assert isinstance(elsewhere, RejectedError) and "WH3/Stock" in str(elsewhere)
    assert shop.requests == []


def test_a_malformed_item_code_in_the_table_is_a_config_error_for_that_sku_alone(shop, tmp_path):
    connector = connector_for(shop.url, tmp_path / "m", extra_items={"lamp": "lamp-1"})
    bad, good = connector.push_availability([figure("lamp", "1"), figure("chair-blue", "2")])
    assert isinstance(bad, ConfigError) and "mappings/woocommerce.yaml, SKU lamp" in str(bad)
    assert "<parent id>:<variation id>" in str(bad) and good == Delivered("set")


def test_rate_limited_retries_after_the_hosts_delay_and_sends_no_more(shop, tmp_path):
    shop.faults.append(Fault(429, {"Retry-After": "17"}, {"code": "too_many_requests", "message": "Slow down"}))
    connector = connector_for(shop.url, tmp_path / "m")
    first, second = connector.push_availability([figure("chair-blue", "1"), figure("mug-s", "1")])
    assert isinstance(first, RetryableError) and first.after == 17
    assert isinstance(second, NotAttempted)
    assert len(shop.requests) == 1


@pytest.mark.parametrize("fault, expected", [
    (Fault(503, body={"code": "maintenance", "message": "Briefly unavailable for scheduled maintenance."}),
     "WooCommerce maintenance: Briefly unavailable"),
    (Fault(200, hang_s=2.0), "timed out"),
], ids=["5xx", "timeout"])
def test_down_or_hanging_is_retryable(shop, tmp_path, fault, expected):
    shop.faults.append(fault)
    connector = connector_for(shop.url, tmp_path / "m", timeout_s=0.5)
    [result] = connector.push_availability([figure("chair-blue", "1")])
    assert isinstance(result, RetryableError) and expected in str(result)
    assert shop.stock("101") == 3


def test_a_lost_answer_is_settled_by_sending_the_same_absolute_set_again(shop, tmp_path):
    shop.faults.append(Fault(200, hang_s=2.0, applied=True))
    connector = connector_for(shop.url, tmp_path / "m", timeout_s=0.5)
    [lost] = connector.push_availability([figure("chair-blue", "6")])
    assert isinstance(lost, RetryableError) and shop.stock("101") == 6
    assert connector.push_availability([figure("chair-blue", "6")]) == [Delivered("set")]
    assert shop.stock("101") == 6


def test_wrong_keys_are_a_config_error_naming_the_secrets_not_their_values(shop, tmp_path):
    shop._auth = "Basic bm9wZTpub3Bl"  # the shop revoked the key
    connector = connector_for(shop.url, tmp_path / "m")
    [result] = connector.push_availability([figure("chair-blue", "1")])
    assert isinstance(result, ConfigError)
    assert "woocommerce_consumer_key" in str(result) and "woocommerce_consumer_secret" in str(result)
    assert KEY not in str(result) and SECRET not in str(result)


def test_a_product_whose_stock_woocommerce_does_not_manage_says_so(shop, tmp_path):
    connector = connector_for(shop.url, tmp_path / "m")
    shop.products[101]["manage_stock"] = False
    original = shop._update

    def unmanaged(parent, item):  # a shop plugin that forces manage_stock off (stock handled elsewhere)
        return original(parent, {**item, "manage_stock": False})
    shop._update = unmanaged
    [result] = connector.push_availability([figure("chair-blue", "2")])
    assert isinstance(result, RejectedError) and "kept stock_quantity None" in str(result)
    assert "enable stock management" in str(result)


def test_the_factory_refuses_other_auth_kinds(tmp_path):
    from erp_bridge.connectors import registry
    from erp_bridge.mapping.loader import load_mappings
    from tests.fakes.woocommerce import SECRETS, write_mapping
    directory = write_mapping(tmp_path / "m", "http://127.0.0.1:9/wp-json/wc/v3")
    path = directory / "woocommerce.yaml"
    text = re.sub(r"      username: .*\n      password: .*\n", "      token: woocommerce_consumer_key\n",
                  path.read_text().replace("kind: basic", "kind: bearer"))
    path.write_text(text)
    mappings = load_mappings(directory)
    with pytest.raises(ConfigError, match="auth kind basic"):
        registry.build(mappings.systems["woocommerce"], SECRETS, mappings.lookups)


def test_read_listed_says_what_woocommerce_shows_for_products_and_variations(shop, tmp_path):
    shop.add_product(103, "stool", None)  # WooCommerce manages no stock for it
    connector = connector_for(shop.url, tmp_path / "m", extra_items={"stool": "103"})
    keys = [("chair-blue", "WH/Stock"), ("mug-s", "WH/Stock"), ("mug-l", "WH/Stock"), ("stool", "WH/Stock"),
            ("nope", "WH/Stock")]
    assert connector.read_listed(keys) == {("chair-blue", "WH/Stock"): 3, ("mug-s", "WH/Stock"): 4,
                                           ("mug-l", "WH/Stock"): 1}
    assert [(r["method"], r["path"].split("?")[0]) for r in shop.requests] == [
        ("GET", "/wp-json/wc/v3/products"), ("GET", "/wp-json/wc/v3/products/230/variations")]
    shop.faults.append(Fault(503, body={"code": "maintenance", "message": "Briefly unavailable"}))
    with pytest.raises(RetryableError):
        connector.read_listed(keys[:1])


def test_read_listed_asks_for_at_most_100_ids_a_call(shop, tmp_path):
    items = {f"sku-{n}": str(1000 + n) for n in range(150)}
    for n in range(150):
        shop.add_product(1000 + n, f"sku-{n}", n)
    connector = connector_for(shop.url, tmp_path / "m", extra_items=items)
    listed = connector.read_listed([(sku, "WH/Stock") for sku in items])
    assert len(listed) == 150 and listed[("sku-7", "WH/Stock")] == 7
    assert len(shop.requests) == 2
