"""ShopifyConnector against FakeShopify over real HTTP (127.0.0.1), plus its one classify function.

The fake executes real GraphQL against a schema excerpt and models compare-and-set
(changeFromQuantity), @idempotent keys and cost throttling, so these tests fail if the connector
sends something Shopify would refuse or applies a figure twice.
"""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
import requests

from erp_bridge.connectors.shopify.graphql import CostBudget, classify
from erp_bridge.connectors.shopify.webhooks import WebhookRejected
from erp_bridge.domain import Decrement, Delivered, Figure
from erp_bridge.errors import ConfigError, NotAttempted, RejectedError, RetryableError, Throttled
from tests.fakes.shopify import (
    ITEMS,
    LOCATION,
    TOKEN,
    WEBHOOK_SECRET,
    FakeShopify,
    Fault,
    connector_for,
    signed_webhook,
    stocked_shop,
)

BLUE, RED, OAK = ITEMS["chair-blue"], ITEMS["chair-red"], ITEMS["table-oak"]


def figure(item, quantity, previous=None, key=None, location="WH/Stock"):
    return Figure(item, location, Decimal(quantity), None if previous is None else Decimal(previous),
                  key or f"odoo:availability:{item}@{location}:{quantity}")


def rows(request):
    return request["variables"]["input"]["quantities"]


@pytest.fixture
def shop():
    with stocked_shop() as s:
        yield s


@pytest.fixture
def connector(shop, tmp_path):
    c = connector_for(shop, tmp_path / "mappings")  # the fakes' 5 s; the timeout test builds its own
    yield c
    c.close()


# --- classify: one answer, one outcome ---------------------------------------------------------

def response(status, body=None, headers=None, text=None):
    r = requests.Response()
    r.status_code = status
    r._content = (text if text is not None else json.dumps(body) if body is not None else "").encode()
    r.headers.update(headers or {})
    return r


THROTTLED = {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
             "extensions": {"cost": {"requestedQueryCost": 10, "throttleStatus": {
                 "maximumAvailable": 100, "currentlyAvailable": 4, "restoreRate": 50}}}}


@pytest.mark.parametrize("result, kind, after, says", [
    (response(200, {"data": {"x": 1}}), dict, None, ""),
    (response(401, {"errors": "[API] Invalid API key or access token"}), ConfigError, None,
     "Shopify rejected the access token (HTTP 401): check secret shopify_token"),
    (response(403, {"errors": "forbidden"}), ConfigError, None, "check secret shopify_token"),
    (response(429, {"errors": "Throttled"}, {"Retry-After": "7"}), RetryableError, 7.0, "HTTP 429"),
    (response(429), RetryableError, None, "HTTP 429"),
    (response(502, text="<html>bad gateway</html>"), RetryableError, None, "HTTP 502: <html>bad gateway</html>"),
    (response(200, THROTTLED), RetryableError, (10 - 4) / 50, "THROTTLED"),
    (response(200, {"errors": [{"message": "Field 'x' doesn't exist on type 'Query'"}]}), RejectedError, None,
     "Field 'x' doesn't exist"),
    (response(200, text="<html>maintenance</html>"), RetryableError, None, "without JSON"),
    (response(404, {"errors": "Not Found"}), RejectedError, None, "HTTP 404"),
    (requests.ReadTimeout("read timed out on https://shop/admin"), RetryableError, None, "timed out: ReadTimeout"),
    (requests.ConnectionError("refused"), RetryableError, None, "failed: ConnectionError"),
], ids=["200-data", "401-config", "403-config", "429-retry-after", "429-no-header", "502-retry", "200-throttled",
        "200-graphql-error-rejected", "200-not-json-retry", "404-rejected", "timeout-retry", "connection-retry"])
def test_classify(result, kind, after, says):
    outcome = classify(result, "shopify_token")
    assert isinstance(outcome, kind)
    if kind is not dict:
        assert says in str(outcome)
        assert getattr(outcome, "after", None) == (pytest.approx(after) if after is not None else None)


def test_classify_never_repeats_the_token_an_error_body_echoes():
    outcome = classify(response(500, {"error": f"bad header {TOKEN}"}), "shopify_token", (TOKEN,))
    assert TOKEN not in str(outcome) and "***" in str(outcome)


def test_cost_budget_says_how_long_until_a_cost_fits():
    budget = CostBudget()
    assert budget.wait_s(10, now=0) == 0  # nothing known yet
    budget.update({"maximumAvailable": 100, "currentlyAvailable": 2, "restoreRate": 4}, now=0)
    assert budget.wait_s(10, now=0) == pytest.approx(2.0)
    assert budget.wait_s(10, now=1) == pytest.approx(1.0)
    assert budget.wait_s(10, now=5) == 0


# --- push ----------------------------------------------------------------------------------------

def test_happy_push_reads_unknown_quantities_then_sets_both_in_one_mutation(shop, connector):
    outcomes = connector.push_availability([figure("chair-blue", 5), figure("chair-red", "2.9")])
    assert outcomes == [Delivered("set"), Delivered("set")]
    assert shop.levels[(BLUE, LOCATION)] == 5 and shop.levels[(RED, LOCATION)] == 2  # rounded down
    read, mutation = shop.requests
    assert "inventoryLevel" in read["query"]
    assert [(r["quantity"], r["changeFromQuantity"]) for r in rows(mutation)] == [(5, 3), (2, 7)]
    assert connector.observed == {(BLUE, LOCATION): 5, (RED, LOCATION): 2}


def test_previous_figure_is_the_compare_base_when_nothing_was_observed(shop, connector):
    assert connector.push_availability([figure("chair-blue", 6, previous=3)]) == [Delivered("set")]
    assert [r["changeFromQuantity"] for m in shop.mutations() for r in rows(m)] == [3]
    assert len(shop.requests) == 1  # no read needed


def test_without_a_previous_figure_shopify_is_read_not_what_this_process_saw(shop, connector):
    """Reconciliation (maybe another process) found the channel edited and forgot the pushed
    figure: what this process observed is as stale as that figure, so Shopify is read again."""
    connector.push_availability([figure("chair-blue", 5)])
    shop.levels[(BLUE, LOCATION)] = 9  # edited in Shopify's admin
    assert connector.push_availability([figure("chair-blue", 5)]) == [Delivered("set")]
    assert shop.levels[(BLUE, LOCATION)] == 5
    assert rows(shop.mutations()[-1])[0]["changeFromQuantity"] == 9


def test_sale_in_shopify_makes_the_set_stale_then_the_next_push_compares_with_the_real_figure(shop, connector):
    connector.push_availability([figure("chair-blue", 5)])
    shop.sell(BLUE, LOCATION, 2)  # Shopify now holds 3; the bridge believes 5
    [stale] = connector.push_availability([figure("chair-blue", 6, previous=5)])  # the bridge pushed 5
    assert isinstance(stale, RetryableError) and stale.after == pytest.approx(1.0)
    assert "Shopify holds 3" in str(stale) and "CHANGE_FROM_QUANTITY_STALE" in str(stale)
    assert shop.levels[(BLUE, LOCATION)] == 3  # never overwritten blindly
    assert connector.observed[(BLUE, LOCATION)] == 3
    # the dispatcher recomputes (the sale's webhook landed: 6 - 2 = 4) and tries again
    assert connector.push_availability([figure("chair-blue", 4, previous=5)]) == [Delivered("set")]
    assert rows(shop.mutations()[-1])[0]["changeFromQuantity"] == 3
    assert shop.levels[(BLUE, LOCATION)] == 4


@pytest.mark.parametrize("pushed", [figure("chair-blue", 3), figure("chair-blue", 3, previous=3)],
                         ids=["equal-to-what-a-read-found", "equal-to-the-previous-push"])
def test_unchanged_figure_is_not_pushed(shop, connector, pushed):
    assert connector.push_availability([pushed]) == [Delivered("unchanged")]
    assert shop.mutations() == []


def test_figure_equal_to_what_this_connector_set_is_not_pushed_again(shop, connector):
    connector.push_availability([figure("chair-blue", 5)])
    assert connector.push_availability([figure("chair-blue", 5, key="again")]) == [Delivered("unchanged")]
    assert len(shop.mutations()) == 1


def test_retry_after_a_timeout_reuses_the_idempotent_key_and_shopify_applies_once(shop, tmp_path):
    connector = connector_for(shop, tmp_path / "fast", timeout_s=0.5)
    shop.fail_next(Fault(200, hang_s=1.0, applied=True))  # Shopify applies it; the answer is lost
    [lost] = connector.push_availability([figure("chair-blue", 5, previous=3)])
    assert isinstance(lost, RetryableError) and "timed out" in str(lost)
    assert connector.push_availability([figure("chair-blue", 5, previous=3)]) == [Delivered("set")]
    first, retry = shop.mutations()
    assert first["variables"]["key"] == retry["variables"]["key"]
    assert first["variables"] == retry["variables"]
    assert len(shop.adjustments) == 1 and shop.levels[(BLUE, LOCATION)] == 5
    connector.close()


def test_a_key_whose_first_request_is_still_running_is_retried_not_dead_lettered(shop, connector):
    """Issue 9: IDEMPOTENCY_CONCURRENT_REQUEST is "try again", never a refusal."""
    shop.concurrent_next = 1
    [busy] = connector.push_availability([figure("chair-blue", 5, previous=3)])
    assert isinstance(busy, RetryableError) and "IDEMPOTENCY_CONCURRENT_REQUEST" in str(busy) and busy.after
    assert connector.push_availability([figure("chair-blue", 5, previous=3)]) == [Delivered("set")]
    first, retry = shop.mutations()
    assert first["variables"] == retry["variables"]  # the same request, the same key
    assert shop.levels[(BLUE, LOCATION)] == 5 and len(shop.adjustments) == 1


def test_same_content_later_gets_a_new_key_so_shopify_does_not_replay_an_old_result(shop, connector):
    same_key = ""  # markers without a sequence: the engine's default key, the same every time
    for quantity in (5, 3, 5):
        assert connector.push_availability([figure("chair-blue", quantity, key=same_key)]) == [Delivered("set")]
    keys = [m["variables"]["key"] for m in shop.mutations()]
    assert len(set(keys)) == 3
    assert shop.levels[(BLUE, LOCATION)] == 5 and len(shop.adjustments) == 3


def test_one_key_twice_in_a_batch_goes_in_two_mutations_each_compared_with_the_last(shop, connector):
    outcomes = connector.push_availability([figure("chair-blue", 5), figure("chair-blue", 4, location="WH2/Stock")])
    assert outcomes == [Delivered("set"), Delivered("set")]
    assert [[(r["quantity"], r["changeFromQuantity"]) for r in rows(m)] for m in shop.mutations()] == [[(5, 3)], [(4, 5)]]


@pytest.mark.parametrize("fault, shop_options, kind, after", [
    (Fault(429, {"Retry-After": "3"}, {"errors": "Throttled"}), {}, Throttled, 3.0),
    (None, {"bucket": 5.0, "restore_rate": 2.0}, Throttled, (10 - 5) / 2),
    (Fault(503, body={"errors": "unavailable"}), {}, RetryableError, None),
], ids=["429-retry-after", "throttled-cost", "503"])
def test_shopify_asking_to_wait_gives_retryable_with_its_delay(tmp_path, fault, shop_options, kind, after):
    with FakeShopify(TOKEN, **shop_options) as shop:
        shop.stock(BLUE, LOCATION, 3)
        shop.stock(RED, LOCATION, 7)
        connector = connector_for(shop, tmp_path / "m", batch_size=1)
        if fault:
            shop.fail_next(fault)
        first, second = connector.push_availability([figure("chair-blue", 5, previous=3), figure("chair-red", 1, previous=7)])
    assert type(first) is kind and first.after == (pytest.approx(after) if after is not None else None)
    assert isinstance(second, NotAttempted)  # the second batch was not sent at all
    assert shop.levels == {(BLUE, LOCATION): 3, (RED, LOCATION): 7}


def test_cost_budget_holds_a_batch_back_instead_of_hammering(tmp_path):
    with FakeShopify(TOKEN, bucket=20.0, restore_rate=0.5) as shop:
        shop.stock(BLUE, LOCATION, 3)
        connector = connector_for(shop, tmp_path / "m")
        for quantity in (4, 5):  # 2 x 10 points: the bucket is empty
            assert connector.push_availability([figure("chair-blue", quantity, previous=quantity - 1)]) == [Delivered("set")]
        sent = len(shop.requests)
        [held] = connector.push_availability([figure("chair-blue", 6, previous=5)])
    assert isinstance(held, NotAttempted) and "cost budget" in str(held)  # no attempt is counted
    assert held.after == pytest.approx(10 / 0.5, abs=0.5)
    assert len(shop.requests) == sent  # nothing was sent


def test_wrong_token_is_a_config_error_naming_the_secret_not_its_value(shop, connector):
    shop.token = "a-rotated-token"
    [outcome] = connector.push_availability([figure("chair-blue", 5, previous=3)])
    assert isinstance(outcome, ConfigError)
    assert "check secret shopify_token" in str(outcome) and TOKEN not in str(outcome)


@pytest.mark.parametrize("bad, says", [
    (figure("no-such-sku", 5), "cannot map SKU no-such-sku at WH/Stock: item 'no-such-sku' has no shopify id"),
    (figure("chair-blue", 5, location="WH9/Stock"), "cannot map SKU chair-blue at WH9/Stock: location 'WH9/Stock' is not mapped"),
], ids=["unmapped-sku", "unmapped-location"])
def test_unmapped_figure_is_rejected_alone(shop, connector, bad, says):
    outcomes = connector.push_availability([figure("chair-red", 1), bad])
    assert outcomes[0] == Delivered("set")
    assert isinstance(outcomes[1], RejectedError) and says in str(outcomes[1])


def test_row_shopify_refuses_is_rejected_by_name_and_the_rest_of_the_batch_still_goes(shop, connector):
    outcomes = connector.push_availability([figure("table-oak", 2, previous=1), figure("chair-red", 1, previous=7)])
    assert isinstance(outcomes[0], RejectedError)
    assert str(outcomes[0]).startswith(f"Shopify refused SKU table-oak at WH/Stock ({OAK} @ {LOCATION}): INVALID_INVENTORY_ITEM:")
    assert outcomes[1] == Delivered("set") and shop.levels[(RED, LOCATION)] == 1


def test_item_not_stocked_where_a_read_looks_is_rejected(shop, connector):
    [outcome] = connector.push_availability([figure("table-oak", 2)])
    assert isinstance(outcome, RejectedError) and "Shopify does not stock SKU table-oak at WH/Stock" in str(outcome)


def test_mapping_batch_size_caps_rows_per_mutation(shop, tmp_path):
    connector = connector_for(shop, tmp_path / "m", batch_size=1)
    connector.push_availability([figure("chair-blue", 5, previous=3), figure("chair-red", 1, previous=7)])
    assert [len(rows(m)) for m in shop.mutations()] == [1, 1]


# --- webhooks ------------------------------------------------------------------------------------

ORDER = {"id": 820982911946154508, "location_id": None,
         "line_items": [{"id": 466157049, "sku": "chair-blue", "variant_id": 39072856, "quantity": 2}]}


def test_webhook_is_verified_with_the_mapping_secret_and_uses_its_default_location(connector):
    headers, body = signed_webhook(WEBHOOK_SECRET, "orders/create", ORDER)
    [change] = connector.verify_webhook(headers, body, "https://bridge/webhooks/shopify")
    expected = Decrement(channel="shopify", order="820982911946154508", line="466157049",
                         item="chair-blue", location=LOCATION, quantity=Decimal(2))
    assert change.model_dump(exclude={"occurred_at"}) == expected.model_dump(exclude={"occurred_at"})


def test_webhook_signed_with_another_secret_is_refused_unchanged(connector):
    headers, body = signed_webhook("another-secret", "orders/create", ORDER)
    with pytest.raises(WebhookRejected) as refused:
        connector.verify_webhook(headers, body, "https://bridge/webhooks/shopify")
    assert refused.value.status == 401 and WEBHOOK_SECRET not in str(refused.value)


# --- factory -------------------------------------------------------------------------------------

def test_registry_builds_the_connector_with_the_mapping_sets_lookup_table(shop, tmp_path):
    from erp_bridge.connectors import registry
    from tests.fakes.shopify import example_mapping_set
    mappings = example_mapping_set(tmp_path / "mappings", shop.url)
    secrets = {"shopify_token": TOKEN, "shopify_webhook_secret": WEBHOOK_SECRET}
    with pytest.raises(ConfigError, match="items.lookup names shopify_items.csv but the connector got no lookup"):
        registry.build(mappings.systems["shopify"], secrets)
    connector = registry.build(mappings.systems["shopify"], secrets, mappings.lookups)
    assert connector.push_availability([figure("chair-blue", 5)]) == [Delivered("set")]
    [unstocked] = connector.push_availability([figure("007", 2, previous=0)])  # mapped by the table, not stocked
    assert f"Shopify refused SKU 007 at WH/Stock ({ITEMS['007']} @ {LOCATION})" in str(unstocked)


@pytest.mark.parametrize("edit, says", [
    (("kind: header", "kind: bearer"), "Shopify takes auth kind header"),
    (("writes:", "units: {default: {factor: 12}}\nwrites:"), "remove the units section"),
], ids=["bearer-auth", "units-conversion"])
def test_factory_refuses_a_mapping_it_cannot_serve_safely(shop, tmp_path, edit, says):
    from erp_bridge.connectors import registry
    from erp_bridge.mapping.loader import load_mappings
    from tests.fakes.shopify import example_mapping_set
    example_mapping_set(tmp_path / "m", shop.url)
    path = tmp_path / "m" / "shopify.yaml"
    path.write_text(path.read_text().replace(*edit, 1))
    mappings = load_mappings(tmp_path / "m")
    with pytest.raises(ConfigError, match=says):
        registry.build(mappings.systems["shopify"], {"shopify_token": TOKEN, "shopify_webhook_secret": "x"},
                       mappings.lookups)
