"""PrestaShop: the real connector (built by the registry from mappings/prestashop.yaml) on the webservice
double (tests/fakes/prestashop.py), which refuses what the devdocs say PrestaShop refuses."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests

from erp_bridge.domain import Delivered, Figure
from erp_bridge.errors import ConfigError, NotAttempted, RejectedError, RetryableError
from tests.contract import prestashop_docs
from tests.fakes.prestashop import FakePrestaShop, Fault, connector_for

pytestmark = pytest.mark.skipif(not prestashop_docs.available(), reason="../shared/specs/prestashop is not beside the repo")


@pytest.fixture
def shop():
    with FakePrestaShop() as fake:
        yield fake
        assert fake.violations == []


@pytest.fixture
def connector(shop, tmp_path):
    built = connector_for(shop, tmp_path)
    yield built
    built.close()


def figure(sku: str, quantity: str) -> Figure:
    return Figure(sku, "WH/Stock", Decimal(quantity))


def shop_time(shop: FakePrestaShop, ago: timedelta) -> str:
    return (datetime.now(UTC) - ago).astimezone(shop.zone).strftime("%Y-%m-%d %H:%M:%S")


# -- availability out ---------------------------------------------------------------------------------

def test_the_whole_resource_goes_back_with_the_quantity_rounded_down(shop, connector):
    sid = shop.add_stock(30, 31, 5)
    shop.stock[sid].update(out_of_stock="1", location="A-12", depends_on_stock="0")
    assert connector.push_availability([figure("mug-s", "7.9")]) == [Delivered("set")]
    assert shop.stock[sid] == {"id": str(sid), "id_product": "30", "id_product_attribute": "31", "id_shop": "1",
                               "id_shop_group": "0", "quantity": "7", "depends_on_stock": "0",
                               "out_of_stock": "1", "location": "A-12"}  # nothing blanked


def test_a_product_without_combinations_is_attribute_0_and_a_negative_figure_shows_0(shop, connector):
    shop.add_stock(12, 0, 4)
    assert connector.push_availability([figure("chair-blue", "-3")]) == [Delivered("set")]
    assert shop.quantity(12) == 0


def test_an_equal_quantity_is_not_written(shop, connector):
    shop.add_stock(12, 0, 4)
    assert connector.push_availability([figure("chair-blue", "4")]) == [Delivered("unchanged")]
    assert shop.puts == 0


def test_an_unmapped_sku_and_a_missing_stock_available_name_what_to_fix(shop, connector):
    shop.add_stock(12, 0, 4)
    unmapped, missing = connector.push_availability([figure("sofa", "1"), figure("mug-l", "1")])
    assert isinstance(unmapped, RejectedError) and "SKU sofa" in str(unmapped) and "prestashop.yaml" in str(unmapped)
    assert isinstance(missing, RejectedError)
    assert "no stock_available for product 30, combination 32 in shop 1" in str(missing)


def test_a_wrong_key_is_a_config_error_that_never_shows_the_key(shop, tmp_path):
    shop.add_stock(12, 0, 4)
    wrong = "WRONGKEYWRONGKEYWRONGKEYWRONGKEY"
    built = connector_for(shop, tmp_path, key=wrong)
    try:
        [result] = built.push_availability([figure("chair-blue", "1")])
    finally:
        built.close()
    assert isinstance(result, ConfigError) and "prestashop_webservice_key" in str(result)
    assert wrong not in str(result) and shop.key not in str(result)


def test_the_hosts_503_is_retried_after_its_delay_and_the_rest_is_not_attempted(shop, connector):
    shop.add_stock(12, 0, 4)
    shop.add_stock(30, 31, 4)
    shop.served.fail_next(Fault(503, {"Retry-After": "7"}, b"<html>Service Unavailable</html>"))
    first, second = connector.push_availability([figure("chair-blue", "1"), figure("mug-s", "1")])
    assert isinstance(first, RetryableError) and first.after == 7
    assert isinstance(second, NotAttempted)
    assert shop.puts == 0


def test_a_refusal_carries_prestashops_own_message(shop, connector):
    sid = shop.add_stock(12, 0, 4)
    shop.served.fail_next(Fault(400, {}, shop_error(41, 'parameter "out_of_stock" required'), path="stock_availables/"))
    [result] = connector.push_availability([figure("chair-blue", "1")])
    assert isinstance(result, RejectedError)
    assert 'PrestaShop error 41: parameter "out_of_stock" required' in str(result)
    assert shop.stock[sid]["quantity"] == "4"


def shop_error(code: int, message: str) -> bytes:
    from tests.fakes.prestashop import error_body
    return error_body(code, message)


def test_the_double_refuses_a_partial_put_as_prestashop_does(shop):
    """docs-getting-started.md: "A response obtained with "display" other than "full" can't be used in
    a PUT (update) request"; docs-resources_stock_availables.md marks quantity, depends_on_stock and
    out_of_stock required."""
    sid = shop.add_stock(12, 0, 4)
    body = f"<prestashop><stock_available><id>{sid}</id><quantity>9</quantity></stock_available></prestashop>"
    answer = requests.put(f"{shop.url}/stock_availables/{sid}", data=body, auth=(shop.key, ""), timeout=5)
    assert answer.status_code == 400 and b"id_product: required" in answer.content
    assert shop.stock[sid]["quantity"] == "4"
    shop.violations.clear()


def test_read_listed_shows_what_the_shop_shows(shop, connector):
    shop.add_stock(30, 31, 6)
    assert connector.read_listed([("mug-s", "WH/Stock"), ("sofa", "WH/Stock")]) == {("mug-s", "WH/Stock"): 6}


# -- sales in -------------------------------------------------------------------------------------------

def keys(polled) -> list[tuple[str, str, str, str, Decimal]]:
    return [(c.kind, c.idempotency_key, c.item, c.location, c.quantity) for c in polled.changes]


def test_the_first_pass_starts_now_and_a_paid_order_decrements_each_line_once(shop, connector):
    shop.place_order([(12, 0, 9)], at=shop_time(shop, timedelta(hours=1)))  # before the bridge: in the SoR already
    connector.commit_poll(connector.poll_changes())
    oid = shop.place_order([(12, 0, 2), (30, 31, 1)], state=2)
    polled = connector.poll_changes()
    assert keys(polled) == [("decrement", f"prestashop:{oid}:2", "chair-blue", "1", 2),
                            ("decrement", f"prestashop:{oid}:3", "mug-s", "1", 1)]
    connector.commit_poll(polled)
    assert connector.poll_changes().changes == []  # the overlap reads it again: seen


def test_a_cancel_gives_back_once_whatever_states_follow(shop, connector):
    connector.commit_poll(connector.poll_changes())
    oid = shop.place_order([(12, 0, 2)], state=10)  # awaiting bank wire: PrestaShop has taken the stock
    connector.commit_poll(connector.poll_changes())
    shop.set_state(oid, 6)
    polled = connector.poll_changes()
    assert keys(polled) == [("increment", f"prestashop:{oid}:1:cancel", "chair-blue", "1", 2)]
    connector.commit_poll(polled)
    shop.set_state(oid, 7)
    assert connector.poll_changes().changes == []


def test_an_order_cancelled_before_the_bridge_saw_it_nets_to_zero(shop, connector):
    connector.commit_poll(connector.poll_changes())
    oid = shop.place_order([(12, 0, 2)], state=6)
    assert [(k[0], k[1]) for k in keys(connector.poll_changes())] == [
        ("decrement", f"prestashop:{oid}:1"), ("increment", f"prestashop:{oid}:1:cancel")]


def test_an_order_in_a_state_that_is_no_sale_waits_for_one(shop, connector):
    connector.commit_poll(connector.poll_changes())
    oid = shop.place_order([(12, 0, 2)], state=8)  # payment error
    polled = connector.poll_changes()
    assert polled.changes == []
    connector.commit_poll(polled)
    shop.set_state(oid, 2)
    assert [k[1] for k in keys(connector.poll_changes())] == [f"prestashop:{oid}:1"]


def test_an_order_saved_late_within_the_overlap_is_read_and_one_older_is_not(shop, connector):
    connector.commit_poll(connector.poll_changes())
    late = shop.place_order([(12, 0, 1)], at=shop_time(shop, timedelta(minutes=3)))
    shop.place_order([(12, 0, 1)], at=shop_time(shop, timedelta(minutes=30)))
    assert [c.order for c in connector.poll_changes().changes] == [str(late)]


def test_many_orders_in_one_second_and_many_pages_are_all_read(shop, connector):
    connector.commit_poll(connector.poll_changes())
    same = shop_time(shop, timedelta(seconds=1))
    placed = [shop.place_order([(12, 0, 1)], at=same) for _ in range(130)]  # a bulk status change
    placed += [shop.place_order([(30, 31, 1)]) for _ in range(120)]
    polled = connector.poll_changes()
    assert sorted(int(c.order) for c in polled.changes) == placed
    listed = [r for r in shop.requests if "/orders?" in r["url"]]
    assert len(listed) >= 3  # pages of 100, each from the last date_upd read


def test_an_unknown_combination_keeps_its_ids_so_the_dead_letter_names_them(shop, connector):
    connector.commit_poll(connector.poll_changes())
    shop.place_order([(99, 7, 1)])
    assert [c.item for c in connector.poll_changes().changes] == ["99:7"]


def test_a_failed_pass_is_kept_for_status_until_one_succeeds(shop, connector):
    connector.commit_poll(connector.poll_changes())
    shop.served.fail_next(Fault(503, {"Retry-After": "3"}, b"busy", path="/orders"))
    with pytest.raises(RetryableError) as failed:
        connector.poll_changes()
    connector.poll_failed(str(failed.value))
    [status] = connector.poll_status()
    assert status["resource"] == "orders" and "503" in str(status["last_error"])
    connector.commit_poll(connector.poll_changes())
    assert connector.poll_status()[0]["last_error"] is None


def test_the_cursor_is_utc_while_the_shop_writes_its_own_time(shop, connector):
    connector.commit_poll(connector.poll_changes())
    shop.place_order([(12, 0, 1)], at=shop_time(shop, timedelta(seconds=-5)))  # 5 s ahead, Paris time
    connector.commit_poll(connector.poll_changes())
    [status] = connector.poll_status()
    cursor = datetime.fromisoformat(str(status["cursor"]).replace("Z", "+00:00"))
    assert abs((cursor - datetime.now(UTC)).total_seconds() - 5) < 3  # not an hour off


def test_a_lost_answer_is_retried_and_finds_the_quantity_already_set(shop, connector):
    shop.add_stock(12, 0, 4)
    shop.served.fail_next(Fault(drop="after_commit", path="stock_availables/"))
    [lost] = connector.push_availability([figure("chair-blue", "9")])
    assert isinstance(lost, RetryableError) and shop.quantity(12) == 9  # applied, answer lost
    assert connector.push_availability([figure("chair-blue", "9")]) == [Delivered("unchanged")]
    assert shop.puts == 1


def test_a_hanging_shop_times_out_as_retryable(shop, tmp_path):
    shop.add_stock(12, 0, 4)
    shop.served.fail_next(Fault(hang_s=1.5, status=200))
    connector = connector_for(shop, tmp_path, timeout_s=0.5)  # shorter than the hang
    [result] = connector.push_availability([figure("chair-blue", "2")])
    connector.close()
    assert isinstance(result, RetryableError) and "timed out" in str(result)
    assert shop.quantity(12) == 4


def test_a_php_notice_before_the_xml_is_retried_with_a_clear_reason(shop, connector):
    connector.commit_poll(connector.poll_changes())
    shop.served.fail_next(Fault(200, {"Content-Type": "text/xml"}, b"<br />\n<b>Notice</b>: Undefined index<?xml",
                                path="/orders"))
    with pytest.raises(RetryableError, match="not XML .*check the shop's error log"):
        connector.poll_changes()



@pytest.mark.parametrize("old, new, says", [
    ("      username: prestashop_webservice_key",
     "      password: prestashop_password\n      username: prestashop_webservice_key",
     "connection.auth.secrets.password: basic auth takes no 'password' \\(takes: username\\)"),
    ('      code: "1"', '      code: "main"', "locations.map codes are PrestaShop shop ids"),
    ('restock_statuses: ["6"]', 'restock_statuses: ["6", "2"]',
     "order state 2 is in both polling.sale_statuses and polling.restock_statuses"),
], ids=["a-password-named", "a-shop-code-not-an-id", "a-state-in-both-lists"])
def test_the_factory_refuses_a_mapping_it_cannot_run_and_says_which_key(shop, tmp_path, old, new, says):
    from erp_bridge.connectors import registry
    from erp_bridge.mapping.loader import load_mappings
    from tests.fakes.prestashop import example_mapping_set
    example_mapping_set(tmp_path, shop.url)
    text = (tmp_path / "prestashop.yaml").read_text(encoding="utf-8")
    assert old in text
    (tmp_path / "prestashop.yaml").write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError, match=says):
        mappings = load_mappings(tmp_path)
        registry.build(mappings.systems["prestashop"], {"prestashop_webservice_key": shop.key,
                                                         "prestashop_password": "x"}, mappings.lookups,
                       storage_url=f"sqlite:///{tmp_path}/q.sqlite3")
