"""The Magento connector on the fake Magento (real HTTP): pushes per source, the legacy stock item,
Magento's errors, and orders polled by updated_at exactly once (paging, overlap, cancels, refunds)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from erp_bridge.connectors.magento import connector as magento_connector
from erp_bridge.connectors.magento import orders
from erp_bridge.domain import Decrement, Delivered, Figure, Increment
from erp_bridge.errors import ConfigError, NotAttempted, RejectedError, RetryableError
from tests.fakes import magento_spec
from tests.fakes.magento import MAINTENANCE, TOO_MANY, FakeMagento, connector_for

pytestmark = pytest.mark.skipif(not magento_spec.available(),
                                reason="../shared/specs/magento2/admin-schema-2.4.9.yaml is not beside the repo")


@pytest.fixture
def magento():
    with FakeMagento() as fake:
        for sku in ("chair-blue", "chair-red", "desk"):
            fake.product(sku, 5)
        yield fake
        assert fake.violations == []


@pytest.fixture
def connector(magento, tmp_path):
    built = connector_for(magento, tmp_path / "m")
    yield built
    built.close()


def posts(magento: FakeMagento) -> list[list[dict]]:
    return [body["sourceItems"] for method, path, body in magento.received
            if method == "POST" and path.endswith("/source-items")]


def test_figures_go_out_per_source_rounded_down_with_their_status(magento, connector):
    results = connector.push_availability([Figure("chair-blue", "WH/Stock", Decimal("7.9")),
                                           Figure("chair-blue", "WH2/Stock", Decimal(0)),
                                           Figure("desk", "WH/Stock", Decimal(-2))])
    assert results == [Delivered("set")] * 3
    assert magento.source_items[("chair-blue", "default")]["quantity"] == 7
    assert magento.source_items[("chair-blue", "default")]["status"] == 1
    assert magento.source_items[("chair-blue", "east_warehouse")]["status"] == 0
    assert magento.source_items[("desk", "default")]["quantity"] == 0  # never below zero
    assert len(posts(magento)) == 1


def test_at_most_twenty_items_a_call(magento, connector):
    for n in range(45):
        magento.product(f"sku-{n}")
    results = connector.push_availability([Figure(f"sku-{n}", "WH/Stock", Decimal(n)) for n in range(45)])
    assert all(r == Delivered("set") for r in results)
    assert [len(p) for p in posts(magento)] == [20, 20, 5]


def test_a_refused_item_dead_letters_with_magentos_message_and_the_others_go_through(magento, connector):
    results = connector.push_availability([Figure("chair-blue", "WH/Stock", Decimal(3)),
                                           Figure("ghost", "WH/Stock", Decimal(1)),
                                           Figure("chair-red", "WH/Stock", Decimal(2))])
    assert results[0] == results[2] == Delivered("set")
    assert isinstance(results[1], RejectedError)
    assert "SKU ghost at source default" in str(results[1])
    assert "requested skus were not found: ghost" in str(results[1])  # %1 filled from parameters
    assert magento.source_items[("chair-red", "default")]["quantity"] == 2


def test_an_unknown_source_names_the_source(magento, tmp_path):
    built = connector_for(magento, tmp_path / "m", **{"code: east_warehouse": "code: west"})
    try:
        result = built.push_availability([Figure("chair-blue", "WH2/Stock", Decimal(3))])[0]
        assert isinstance(result, RejectedError) and "source west" in str(result)
        assert "Could not save Source Item" in str(result)
    finally:
        built.close()


def test_throttled_or_down_retries_and_leaves_the_rest_unsent(magento, connector):
    for n in range(25):
        magento.product(f"sku-{n}")
    magento.fail_next(TOO_MANY)
    results = connector.push_availability([Figure(f"sku-{n}", "WH/Stock", Decimal(1)) for n in range(25)])
    assert all(isinstance(r, RetryableError) for r in results)
    assert all(isinstance(r, NotAttempted) for r in results[20:])
    magento.fail_next(MAINTENANCE)
    result = connector.push_availability([Figure("desk", "WH/Stock", Decimal(1))])[0]
    assert isinstance(result, RetryableError) and result.after == 1.0  # Retry-After honoured


def test_a_wrong_token_is_refused_without_showing_it(magento, tmp_path):
    built = connector_for(magento, tmp_path / "m")
    magento.token = "another-token"  # the integration was reactivated: its token changed
    try:
        result = built.push_availability([Figure("desk", "WH/Stock", Decimal(1))])[0]
        assert isinstance(result, ConfigError) and "HTTP 401" in str(result) and "magento_token" in str(result)
        # Magento's own words: a 401 also means the integration lacks the resource in its API permissions
        assert "isn't authorized to access Magento_InventoryApi::stock_source_item_assign" in str(result)
        sent = len(posts(magento))
        results = built.push_availability([Figure(f"sku-{n}", "WH/Stock", Decimal(1)) for n in range(25)])
        assert all(isinstance(r, ConfigError) for r in results) and len(posts(magento)) == sent + 1  # not 2 calls
        assert "mag-int-token" not in str(result) and "another-token" not in str(result)
    finally:
        built.close()


def test_single_source_shops_write_the_legacy_stock_item(magento, tmp_path):
    built = connector_for(magento, tmp_path / "m", **{"single_source: false": "single_source: true",
                                                      "code: east_warehouse": "code: default",
                                                      "  map:\n": "  aggregation: sum\n  map:\n"})
    try:
        results = built.push_availability([Figure("desk", "WH/Stock", Decimal("4.5")),
                                           Figure("chair-red", "WH/Stock", Decimal(0)), Figure("ghost", "WH/Stock", Decimal(1))])
        assert results[:2] == [Delivered("set")] * 2
        assert magento.products["desk"]["qty"] == 4 and magento.products["chair-red"]["is_in_stock"] is False
        assert isinstance(results[2], RejectedError) and "doesn't exist" in str(results[2])
        built.push_availability([Figure("desk", "WH/Stock", Decimal(2))])
        gets = [p for m, p, _ in magento.received if m == "GET" and "/stockItems/desk" in p]
        assert len(gets) == 1  # the item id is read once
    finally:
        built.close()


# -- orders ---------------------------------------------------------------------------------------

def keys(changes) -> list[str]:
    return sorted(c.idempotency_key for c in changes)


def poll(connector) -> list[Decrement | Increment]:
    polled = connector.poll_changes()
    connector.commit_poll(polled)
    return list(polled.changes)


def test_an_order_counts_once_and_its_cancel_gives_back_once(magento, connector):
    assert poll(connector) == []  # the first pass starts the window: earlier sales are the SoR's
    order = magento.order(("chair-blue", 2), ("desk", 1))
    sold = poll(connector)
    assert [(c.kind, c.item, c.location, c.quantity) for c in sold] == [
        ("decrement", "chair-blue", "default", 2), ("decrement", "desk", "default", 1)]
    assert poll(connector) == []  # the overlap re-reads it: nothing twice
    magento.cancel(order)
    back = poll(connector)
    assert [(c.kind, c.quantity) for c in back] == [("increment", 2), ("increment", 1)]
    assert keys(back) == [f"magento:{order['entity_id']}:{i['item_id']}:cancel" for i in order["items"]]
    assert poll(connector) == []


def test_a_configurable_is_counted_on_its_simple_child_only(magento, connector):
    poll(connector)
    order = magento.order(("chair-blue", 3), configurable=True)
    sold = poll(connector)
    child = next(i for i in order["items"] if i.get("parent_item_id"))
    assert keys(sold) == [f"magento:{order['entity_id']}:{child['item_id']}"]
    magento.cancel(order)
    assert [c.quantity for c in poll(connector)] == [3]


def test_refunds_restock_only_when_the_mapping_says_so_once_per_credit_memo(magento, tmp_path):
    hooks = "webhooks:\n  secret: magento_webhook_secret\n  restock_statuses: [canceled, refunded]\n"
    built = connector_for(magento, tmp_path / "m", **{"requests:": hooks + "\nrequests:"})
    try:
        poll(built)
        order = magento.order(("chair-red", 3), configurable=True)
        assert len(poll(built)) == 1
        first = magento.refund(order, "chair-red", 1)
        back = poll(built)
        assert [(c.kind, c.reason, c.quantity) for c in back] == [("increment", "refund", 1)]
        assert back[0].idempotency_key.endswith(f":refund:{first['entity_id']}")
        magento.refund(order, "chair-red", 2)
        assert [c.quantity for c in poll(built)] == [2]  # the second credit memo, not both again
        assert poll(built) == []
    finally:
        built.close()


def test_refunds_do_not_restock_by_default(magento, connector):
    poll(connector)
    order = magento.order(("desk", 1))
    poll(connector)
    magento.refund(order, "desk", 1)
    assert poll(connector) == []
    assert not any("/V1/creditmemos" in p for _, p, _ in magento.received)


def test_orders_placed_before_polling_started_count_only_their_returns(magento, connector):
    old = magento.order(("desk", 2), at=datetime.now(UTC) - timedelta(days=2))
    poll(connector)
    magento.cancel(old)
    changes = poll(connector)
    assert [(c.kind, c.quantity) for c in changes] == [("increment", 2)]  # its sale is in the SoR already


def test_bounded_pages_read_a_backlog_without_skipping_or_doubling(magento, connector, monkeypatch):
    monkeypatch.setattr(magento_connector, "PAGE_SIZE", 10)
    monkeypatch.setattr(magento_connector, "MAX_PAGES", 3)
    woken = []
    connector.on_notice(lambda: woken.append(1))
    poll(connector)
    start = datetime.now(UTC)
    made = [magento.order(("desk", 1), at=start + timedelta(seconds=n // 4)) for n in range(75)]  # 19 seconds
    passes = [[c.idempotency_key for c in poll(connector)] for _ in range(5)]
    assert [len(p) for p in passes] == [30, 30, 15, 0, 0]  # the overlap read again does not eat the bound
    seen = [key for p in passes for key in p]
    assert sorted(seen) == sorted(f"magento:{o['entity_id']}:{o['items'][0]['item_id']}" for o in made)
    assert woken  # a pass that stopped at MAX_PAGES wakes the poller for the rest at once
    later = [magento.order(("desk", 1), at=start + timedelta(seconds=30)) for _ in range(45)]  # one mass action
    for _ in range(3):
        seen += [c.idempotency_key for c in poll(connector)]
    assert len(seen) == len(set(seen)) == 120 and len(later) == 45


def test_a_page_past_the_end_is_the_last_page_again_and_ends_the_walk(magento, connector, monkeypatch):
    monkeypatch.setattr(magento_connector, "PAGE_SIZE", 2)
    poll(connector)
    for _ in range(3):
        magento.order(("desk", 1))
    magento.total_count_lies = True
    assert len(poll(connector)) == 3
    pages = [p for _, p, _ in magento.received if p.startswith("/rest/default/V1/orders")]
    assert len(pages) == 1 + 3  # the first pass; then pages 1, 2 and 3 (page 2 again): never a fourth


def test_a_failed_pass_is_kept_for_status_and_raises(magento, connector):
    poll(connector)
    magento.fail_next(MAINTENANCE)
    with pytest.raises(RetryableError):
        connector.poll_changes()
    connector.poll_failed("Magento 503")
    status = connector.poll_status()[0]
    assert status["resource"] == "orders" and status["last_error"] == "Magento 503"


def test_magento_times_are_utc_without_a_zone():
    assert orders.magento_time("2026-11-30 09:15:02") == datetime(2026, 11, 30, 9, 15, 2, tzinfo=UTC)
    assert orders.magento_time("2026-11-30T09:15:02Z") is None
    assert orders.as_magento_time(datetime(2026, 11, 30, 10, 15, 2, 999999, tzinfo=UTC)) == "2026-11-30 10:15:02"


def test_a_malformed_order_is_reported_not_applied():
    rules = orders.Rules("magento", "default", lambda sku: sku)
    reading = orders.read([{"entity_id": 5, "state": "new", "items": [{"item_id": 1, "sku": "a", "qty_ordered": "lots"}]},
                           {"entity_id": 6, "state": "new", "items": [{"item_id": 2, "sku": "b", "qty_ordered": 1}]}],
                          rules)
    assert [c.order for c in reading.changes] == ["6"]
    assert "order 5" in reading.reports[0]


def test_magentos_messages_are_filled_in():
    class Answer:
        def __init__(self, body):
            self._body = body

        def json(self):
            return self._body

    message = magento_connector.magento_message(Answer({"message": "Validation Failed", "errors": [
        {"message": '"%field" can not be empty.', "parameters": {"field": "sku"}}]}))
    assert message == 'Validation Failed: "sku" can not be empty.'


def test_a_malformed_credit_memo_is_reported_and_the_others_count():
    rules = orders.Rules("magento", "default", lambda sku: sku, restock=("canceled", "refunded"))
    order = {"entity_id": 7, "items": [{"item_id": 70, "sku": "desk", "qty_ordered": 2, "qty_refunded": 2}]}
    reading = orders.Reading()
    orders.refunds(order, [{"items": [{"order_item_id": 70, "qty": 1}]},
                           {"entity_id": 9, "items": [{"order_item_id": 70, "qty": 1}]}], rules, reading)
    assert [c.idempotency_key for c in reading.changes] == ["magento:7:70:refund:9"]
    assert "credit memo None of order 7 is malformed" in reading.reports[0]
