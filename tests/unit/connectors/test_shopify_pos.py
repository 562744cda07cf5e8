"""Shopify POS: a store is a Shopify location of its own; its orders (``source_name: pos``) carry its
numeric ``location_id`` and must decrement the stock location that store sells from in the system of
record, not the online default. Run on the shipped mappings with the POS example in shopify.yaml
enabled and the store's stock location added to odoo.yaml."""
from __future__ import annotations

import logging
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from erp_bridge.connectors import registry
from erp_bridge.errors import RejectedError
from erp_bridge.mapping.loader import load_mappings
from erp_bridge.sync.router import Router
from erp_bridge.sync.translate import to_internal
from tests.fakes.shopify import WEBHOOK_SECRET, signed_webhook

SOURCE = Path(__file__).resolve().parents[3] / "mappings"
STORE = "gid://shopify/Location/70000001"


@pytest.fixture
def mappings(tmp_path):
    for name in ("shopify_items.csv", "odoo.yaml"):
        shutil.copy(SOURCE / name, tmp_path / name)
    text = (SOURCE / "shopify.yaml").read_text(encoding="utf-8")
    enabled = text.replace("    # - internal: SHOP1/Stock\n    #   code:", "    - internal: SHOP1/Stock\n      code:")
    assert enabled != text, "the POS example in mappings/shopify.yaml moved: keep this test on it"
    (tmp_path / "shopify.yaml").write_text(enabled, encoding="utf-8")
    odoo = (tmp_path / "odoo.yaml").read_text(encoding="utf-8")
    (tmp_path / "odoo.yaml").write_text(odoo.replace(
        "    - internal: WH2/Stock\n      code: WH2/Stock\n",
        "    - internal: WH2/Stock\n      code: WH2/Stock\n    - internal: SHOP1/Stock\n      code: SHOP1/Stock\n"),
        encoding="utf-8")
    return load_mappings(tmp_path)


@pytest.fixture
def shopify(mappings):
    built = registry.build(mappings.systems["shopify"], {"shopify_token": "shpat_x", "shopify_webhook_secret":
                                                         WEBHOOK_SECRET}, mappings.lookups)
    yield built
    built.close()


def order(location_id: int | None, source: str = "pos") -> dict:
    return {"id": 450789469, "source_name": source, "location_id": location_id,
            "line_items": [{"id": 466157049, "sku": "chair-blue", "variant_id": 39072856, "quantity": 2}]}


def deliver(shopify, topic: str, payload: dict):
    headers, body = signed_webhook(WEBHOOK_SECRET, topic, payload)
    return shopify.verify_webhook(headers, body, "https://bridge.example.com/webhooks/shopify")


def test_a_pos_order_decrements_the_stores_stock_location(shopify, mappings):
    [change] = deliver(shopify, "orders/create", order(70000001))
    assert change.location == STORE and change.idempotency_key == "shopify:450789469:466157049"
    sor, *channels = Router(mappings).channel_change(change)
    assert (sor.target, sor.kind, sor.item, sor.location, sor.quantity) == (
        "odoo", "decrement", "chair-blue", "SHOP1/Stock", Decimal(-2))
    assert [(e.target, e.location) for e in channels] == [("shopify", "SHOP1/Stock")]  # the store's figure


def test_an_online_order_still_decrements_the_default_location(shopify, mappings):
    [change] = deliver(shopify, "orders/create", order(None, source="web"))
    sor = Router(mappings).channel_change(change)[0]
    assert (sor.target, sor.location) == ("odoo", "WH/Stock")


def test_a_restock_at_the_store_comes_back_there(shopify, mappings):
    refund = {"id": 509562969, "order_id": 450789469, "refund_line_items": [
        {"id": 104689539, "line_item_id": 466157049, "location_id": 70000001, "quantity": 1, "restock_type": "return",
         "line_item": {"id": 466157049, "sku": "chair-blue", "variant_id": 39072856}}]}
    [change] = deliver(shopify, "refunds/create", refund)
    sor = Router(mappings).channel_change(change)[0]
    assert (sor.kind, sor.location, sor.quantity) == ("increment", "SHOP1/Stock", Decimal(1))


def test_an_unknown_store_is_queued_and_says_which_location_and_mapping_key_to_add(shopify, mappings, caplog):
    with caplog.at_level(logging.WARNING):
        [change] = deliver(shopify, "orders/create", order(99))
    assert change.location == "gid://shopify/Location/99"
    assert "POS order 450789469 at location gid://shopify/Location/99" in caplog.text
    assert "mappings/shopify.yaml locations.map" in caplog.text
    with pytest.raises(RejectedError) as refused:
        to_internal(mappings, change)
    assert "shopify location 'gid://shopify/Location/99' is not in" in str(refused.value)
    assert "locations.map" in str(refused.value) and "code: gid://shopify/Location/99}" in str(refused.value)
    [entry] = Router(mappings).channel_change(change)  # not lost: queued for the SoR, dead-letters there
    assert (entry.target, entry.location, entry.idempotency_key) == (
        "odoo", "gid://shopify/Location/99", "shopify:450789469:466157049")


def test_a_mapping_that_lists_the_bare_id_keeps_it():
    from erp_bridge.connectors.shopify.webhooks import location_code
    assert location_code("70000001", {"70000001"}) == "70000001"
    assert location_code("70000001", {STORE}) == STORE
    assert location_code(STORE, {STORE}) == STORE
