"""POST /realtime/{channel}: every answer of the real-time inventory script protocol (seed 000).

The example mapping mappings/yahoo_store.yaml: chair-blue is 4 + 2 free, safety buffer 1 -> 5.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from erp_bridge.http.realtime import PROBE_MESSAGE

from .harness import form, sell

URL = "/realtime/yahoo_store"

# (id, pull overrides, form, Available, Inventory-Message)
CASES = [
    ("quantity_in_stock", {}, form("CHAIR-BLUE", 2), "5", "In stock"),
    ("quantity_all_of_it", {}, form("CHAIR-BLUE", 5), "5", "In stock"),
    ("no_quantity_means_one", {}, form("CHAIR-BLUE", None), "5", "In stock"),
    ("more_than_available", {}, form("CHAIR-BLUE", 7), "5", "Only 5 left in stock"),
    ("backorders_report_the_real_figure", {"backorders": True}, form("CHAIR-BLUE", 7), "5",
     "Only 5 in stock; the rest will be backordered"),
    ("backorders_enough_stock", {"backorders": True}, form("CHAIR-BLUE", 1), "5", "In stock"),
    ("display_availability_is_one", {"display": "availability"}, form("CHAIR-BLUE", 2), "1", "In stock"),
    ("display_availability_hides_count_in_message", {"display": "availability"}, form("CHAIR-BLUE", 9), "1",
     "Only some left in stock"),
    ("variant_selected_by_options", {}, form("TSHIRT", 1, Color="Sea Green", Size="L"), "2", "In stock"),
    ("options_case_and_spaces_ignored", {}, form("TSHIRT", 1, color=" sea green", SIZE="l"), "2", "In stock"),
    ("extra_option_selects_nothing", {}, form("TSHIRT", 1, Color="Sea Green", Size="L", Giftwrap="Yes"), "2",
     "In stock"),
    ("unknown_options", {}, form("TSHIRT", 1, Color="Red", Size="L"), "0", "This item is not available online"),
    ("missing_option", {}, form("TSHIRT", 1, Color="Sea Green"), "0", "This item is not available online"),
    ("unknown_code", {}, form("NOPE", 1), "0", "This item is not available online"),
    ("sor_does_not_know_the_sku", {}, form("BOND-CHAIR", 1), "0", "This item is not available online"),
    ("probe", {}, {".catalog": "x", ".id": "_fake_yahoo_item_", ".code": "_fake_yahoo_code_"}, "0", PROBE_MESSAGE),
]


@pytest.mark.parametrize("pull, data, available, message",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_answer(pull_app, pull, data, available, message):
    h = pull_app(**pull)
    h.sor.free[("TS-SG-L", "WH/Stock")] = Decimal(3)
    response = h.client.post(URL, data=data)
    assert response.status_code == 200
    assert (response.headers["Available"], response.headers["Inventory-Message"]) == (available, message)


def test_out_of_stock(pull_app):
    h = pull_app()
    h.sor.free.update({("chair-blue", "WH/Stock"): Decimal(1), ("chair-blue", "WH2/Stock"): Decimal(0)})
    response = h.client.post(URL, data=form("CHAIR-BLUE", 1))
    assert (response.headers["Available"], response.headers["Inventory-Message"]) == ("0", "Sold out")


@pytest.mark.parametrize("policy, available, message", [
    ("reject", "0", "Availability could not be checked right now; please try again in a few minutes"),
    ("accept", "-1", "Availability could not be confirmed"),
], ids=["reject", "accept"])
@pytest.mark.parametrize("how", ["down", "hangs_past_timeout"])
def test_unreachable_policy(pull_app, policy, available, message, how):
    h = pull_app(unreachable=policy, live_timeout_s=0.2)
    if how == "down":
        h.sor.down = True
    else:
        h.sor.hang.clear()
    try:
        response = h.client.post(URL, data=form("CHAIR-BLUE", 1))
    finally:
        h.sor.hang.set()
    assert response.status_code == 200
    assert (response.headers["Available"], response.headers["Inventory-Message"]) == (available, message)
    assert response.headers["X-Availability-Source"] == "unreachable"


def test_probe_is_answered_while_the_system_of_record_is_down(pull_app):
    h = pull_app()
    h.sor.down = True
    response = h.client.post(URL, data={".id": "_fake_yahoo_item_", ".code": "_fake_yahoo_code_"})
    assert response.status_code == 200 and int(response.headers["Available"]) == 0 and h.sor.reads == 0


def test_second_call_includes_decrements_received_in_between(pull_app):
    h = pull_app(fresh_s=60)
    first = h.client.post(URL, data=form("CHAIR-BLUE", 2))
    sell(h.queue, "chair-blue", "WH/Stock", 2, "order-7")  # the webhook stored it; Odoo has not applied it
    second = h.client.post(URL, data=form("CHAIR-BLUE", 2))
    assert (first.headers["Available"], second.headers["Available"]) == ("5", "3")
    assert second.headers["X-Availability-Source"] == "cache" and h.sor.reads == 1


def test_fresh_cache_is_answered_without_a_read_and_stale_reads_live(tmp_path):
    from tests.fakes.clock import FakeClock

    from .harness import make_app
    clock = FakeClock()
    h = make_app(tmp_path, clock=clock)
    h.sor.free[("chair-blue", "WH/Stock")] = Decimal(3)
    h.sor.free[("chair-blue", "WH2/Stock")] = Decimal(0)
    h.client.post(URL, data=form("CHAIR-BLUE"))
    clock.advance(4.9)
    cached = h.client.post(URL, data=form("CHAIR-BLUE"))
    assert (h.sor.reads, cached.headers["X-Availability-Source"], cached.headers["X-Availability-Age"]) == (
        1, "cache", "4.900")
    clock.advance(0.2)
    h.sor.free[("chair-blue", "WH/Stock")] = Decimal(8)
    live = h.client.post(URL, data=form("CHAIR-BLUE"))
    assert (h.sor.reads, live.headers["X-Availability-Source"], live.headers["Available"]) == (2, "live", "7")


@pytest.mark.parametrize("body, problem", [
    (b".catalog=x&.id=chair", "missing .code (the item to check)"),
    (b".code=CHAIR-BLUE&.quantity=two", ".quantity must be a whole number, 0 or more"),
    (b".code=CHAIR-BLUE&.quantity=-1", ".quantity must be a whole number, 0 or more"),
    (b".code=CHAIR-BLUE&.quantity=1.5", ".quantity must be a whole number, 0 or more"),
    (b"not a form", "expected an application/x-www-form-urlencoded body (key=value&...)"),
], ids=["no_code", "quantity_text", "quantity_negative", "quantity_fraction", "not_form_encoded"])
def test_malformed_request_is_400_with_the_headers_still_set(pull_app, body, problem):
    response = pull_app().client.post(URL, content=body,
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (response.status_code, response.headers["Available"], response.headers["Inventory-Message"]) == (
        400, "0", problem)


def test_unknown_channel_is_404(pull_app):
    h = pull_app()
    assert h.client.post("/realtime/shopify", data=form("CHAIR-BLUE")).status_code == 404
    assert h.client.post("/realtime/digital_river", data=form("CHAIR-BLUE")).status_code == 404


def test_item_field_id_reads_dot_id(pull_app):
    h = pull_app(item_field="id")
    response = h.client.post(URL, data={".id": "CHAIR-BLUE", ".code": "something-else"})
    assert response.headers["Available"] == "5"
