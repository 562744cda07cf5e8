"""The first end-to-end slice (issue 5): a real Odoo (17, 18; 19 through JSON-2) with stock_sync_bridge, the bridge running
as in production (`erp-bridge serve`), Shopify and SAP Business One doubles at the HTTP boundary,
and a second channel (a generic JSON endpoint). Skipped without ODOO_SRC, like every test here."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tests.fakes.http_target import FakeTarget
from tests.fakes.sap_b1 import FakeServiceLayer
from tests.fakes.shopify import FakeShopify, signed_webhook

from . import bridge as b
from . import server as srv
from .conftest import BRIDGE, availability, settle

pytestmark = pytest.mark.odoo
ITEM_IDS = {}


@pytest.fixture(scope="module")
def world(odoo_server, admin, setup, bridge, bridge_api_key, tmp_path_factory, request):
    """Odoo + doubles + the bridge, wired as an integrator would (mapping files, secrets)."""
    settle(bridge)  # earlier tests' outbox rows are not this bridge's business
    stock = srv.call(admin, "stock.location", "read", [setup["stock_id"]], ["complete_name"])[0]["complete_name"]
    skus = {f"E2E-{n}": str(9000 + n) for n in range(1, 9)}
    ITEM_IDS.update(skus)
    shop, sap, pos = FakeShopify(b.SECRETS["shopify_token"]), FakeServiceLayer(), FakeTarget()
    shop.__enter__(), sap.__enter__(), pos.__enter__()
    tmp = tmp_path_factory.mktemp("bridge")
    config = b.write_config(tmp, odoo_server.port, odoo_server.db, stock, shop, sap, pos.url, skus)
    bridge_proc = b.start(config, BRIDGE[0], bridge_api_key)
    previous = _point_odoo_at(admin, bridge_proc.url)
    yield {"shop": shop, "sap": sap, "pos": pos, "bridge": bridge_proc, "stock": stock, "admin": admin,
           "odoo_bridge": bridge, "setup": setup}
    bridge_proc.stop()
    for key, value in previous.items():  # the Odoo server is shared with other test modules
        srv.call(admin, "ir.config_parameter", "set_param", f"stock_sync_bridge.{key}", value or False)
    keep = tmp_path_factory.getbasetemp().parent / "erp-bridge-e2e.log"
    keep.write_text(bridge_proc.log_text())  # outlives pytest's temp-dir rotation, for diagnosis
    for fake in (shop, sap, pos):
        fake.__exit__(None, None, None)


def _point_odoo_at(admin, url: str) -> dict:
    """Set the module's settings for this bridge; returns the values they had."""
    wanted = {"bridge_url": url, "shared_secret": b.SECRETS["odoo_nudge_secret"], "decrement_mode": "done"}
    previous = {key: srv.call(admin, "ir.config_parameter", "get_param", f"stock_sync_bridge.{key}") for key in wanted}
    for key, value in wanted.items():
        srv.call(admin, "ir.config_parameter", "set_param", f"stock_sync_bridge.{key}", value)
    return previous


def product(world, make_product, n: int, qty: float) -> str:
    """A synced product with ``qty`` in Odoo, known to Shopify (at ``qty``) and to SAP."""
    sku = f"E2E-{n}"
    make_product(qty, sku=sku)
    world["shop"].stock(f"gid://shopify/InventoryItem/{ITEM_IDS[sku]}", b.SHOP_LOCATION, int(qty))
    world["sap"].stock(sku.upper(), "01", qty)
    return sku


def shop_quantity(world, sku: str) -> int:
    return world["shop"].levels[(f"gid://shopify/InventoryItem/{ITEM_IDS[sku]}", b.SHOP_LOCATION)]


def pos_figures(world, sku: str) -> list[Decimal]:
    return [Decimal(r.body["quantity"]) for r in world["pos"].received
            if r.path.endswith("availability") and r.body.get("item") == sku]


def order_webhook(sku: str, order_id: int, quantity: int, webhook_id: str) -> tuple[dict, bytes]:
    order = {"id": order_id, "location_id": None, "line_items": [
        {"id": order_id * 10 + 1, "sku": sku, "variant_id": 1, "quantity": quantity, "gift_card": False}]}
    return signed_webhook(b.SECRETS["shopify_webhook_secret"], "orders/create", order, webhook_id)


def _delivered_targets(world, product_id: int) -> set[tuple[str, str]]:
    rows = srv.call(world["admin"], "stock.sync.delivery", "search_read",
                    [("product_id", "=", product_id), ("state", "=", "done")], ["event_type", "target"])
    return {(r["event_type"], r["target"]) for r in rows}


def sap_exits(world, sku: str) -> list[dict]:
    return [line for line in world["sap"].lines("InventoryGenExits") if line["ItemCode"] == sku.upper()]


def test_a_shopify_order_reaches_odoo_once_and_every_channel_and_sap_follow(world, make_product):
    sku = product(world, make_product, 1, 10)
    headers, body = order_webhook(sku, 5001, 2, "wh-5001")
    assert world["bridge"].post_webhook("shopify", headers, body).status_code == 200

    odoo = world["odoo_bridge"]
    b.wait_until(lambda: availability(odoo, sku, world["stock"])["free"] == 8, 20, "Odoo's free quantity to drop")
    b.wait_until(lambda: shop_quantity(world, sku) == 8, 20, "Shopify to show 8")
    b.wait_until(lambda: Decimal(7) in pos_figures(world, sku), 20, "the POS to show 8 - buffer 1",
                 detail=lambda: [(r.path, r.body) for r in world["pos"].received][-3:])
    b.wait_until(lambda: len(sap_exits(world, sku)) == 1, 30, "SAP to receive the goods issue")
    assert sap_exits(world, sku)[0]["Quantity"] == 2

    # per-target results reach Odoo's Stock Sync screens: the channels for the marker, SAP for the move
    product_id = srv.call(world["admin"], "product.product", "search", [("default_code", "=", sku)])[0]
    b.wait_until(lambda: _delivered_targets(world, product_id) >= {("marker", "shopify"), ("marker", "pos"),
                                                                   ("journal", "sap_b1")}, 20,
                 "per-target results in Odoo", detail=lambda: srv.call(
                     world["admin"], "stock.sync.delivery", "search_read", [],
                     ["product_id", "event_type", "target", "state", "sequence", "last_error"]))

    for attempt in range(3):  # the same delivery again, and again under new delivery ids
        again = world["bridge"].post_webhook("shopify", *order_webhook(sku, 5001, 2, f"wh-5001-retry-{attempt}"))
        assert again.status_code == 200
    time.sleep(2.0)  # give a double count every chance to show before asserting it did not happen
    assert availability(odoo, sku, world["stock"])["on_hand"] == 8
    assert availability(odoo, sku, world["stock"])["free"] == 8
    assert len(sap_exits(world, sku)) == 1
    assert shop_quantity(world, sku) == 8


def test_an_odoo_sale_reaches_shopify_within_a_second_of_the_commit(world, make_product):
    sku = product(world, make_product, 2, 10)
    b.wait_until(lambda: shop_quantity(world, sku) == 10 and world["shop"].mutations(), 10, "the first push")
    admin, setup = world["admin"], world["setup"]
    product_id = srv.call(admin, "product.product", "search", [("default_code", "=", sku)])[0]
    order_id = srv.call(admin, "sale.order", "create", {
        "partner_id": setup["partner_id"], "warehouse_id": setup["warehouse_id"],
        "order_line": [(0, 0, {"product_id": product_id, "product_uom_qty": 3})]})
    srv.call(admin, "sale.order", "action_confirm", [order_id])
    committed = time.monotonic()  # the RPC returns after Odoo committed the transaction
    b.wait_until(lambda: shop_quantity(world, sku) == 7, 5, "Shopify to show 7", interval_s=0.005)
    latency = time.monotonic() - committed
    assert latency < 1.0, f"Shopify got the figure {latency:.3f}s after the commit"


def test_sap_down_for_a_while_queues_retries_and_drains_once_each(world, make_product):
    sku = product(world, make_product, 3, 20)
    world["sap"].down()
    try:
        for n in range(3):
            headers, body = order_webhook(sku, 6001 + n, 1, f"wh-{6001 + n}")
            assert world["bridge"].post_webhook("shopify", headers, body).status_code == 200
        b.wait_until(lambda: availability(world["odoo_bridge"], sku, world["stock"])["on_hand"] == 17, 20,
                     "Odoo to apply the three sales")
        b.wait_until(lambda: _retrying(world, "sap_b1"), 20, "deliveries to SAP to be retrying")
    finally:
        world["sap"].up()
    b.wait_until(lambda: sum(l["Quantity"] for l in sap_exits(world, sku)) == 3, 60, "SAP to catch up")
    time.sleep(1.0)
    assert sum(line["Quantity"] for line in sap_exits(world, sku)) == 3  # nothing posted twice


def _retrying(world, target: str) -> bool:
    rows = world["bridge"].admin("/admin/status")["targets"]
    return any(r["target"] == target and r["depth"].get("pending", 0) + r["depth"].get("leased", 0) > 0
               for r in rows) and '"outcome": "retry"' in world["bridge"].log_text()


@pytest.mark.parametrize("case, status", [
    pytest.param("bad-signature", 401, id="bad-signature"),
    pytest.param("malformed-json", 400, id="malformed-json"),
    pytest.param("unknown-sku", 200, id="unknown-sku-dead-letters"),
    pytest.param("unknown-location", 200, id="unknown-location-dead-letters"),
])
def test_bad_webhooks_get_a_clear_answer_and_affect_nothing_else(world, make_product, case, status):
    sku = product(world, make_product, 4 + ["bad-signature", "malformed-json", "unknown-sku", "unknown-location"].index(case), 5)
    headers, body = order_webhook(sku if case != "unknown-sku" else "NOT-A-SKU", 7000 + len(case), 1, f"wh-{case}")
    if case == "bad-signature":
        headers["X-Shopify-Hmac-Sha256"] = "AAAA" + headers["X-Shopify-Hmac-Sha256"][4:]
    if case == "malformed-json":
        headers, body = signed_webhook(b.SECRETS["shopify_webhook_secret"], "orders/create", {}, "x")
        body = b"{not json"
        headers["X-Shopify-Hmac-Sha256"] = _sign(body)
    if case == "unknown-location":
        import json
        order = json.loads(body)
        order["location_id"] = 424242
        headers, body = signed_webhook(b.SECRETS["shopify_webhook_secret"], "orders/create", order, "wh-loc")
    answer = world["bridge"].post_webhook("shopify", headers, body)
    assert answer.status_code == status, answer.text
    if status == 200:
        reason = "is not listed for shopify" if case == "unknown-sku" else "location 'gid://shopify/Location/424242' is not in"
        b.wait_until(lambda: any(reason in (e["last_error"] or "")
                                 for e in world["bridge"].admin("/admin/dead-letters")["entries"]),
                     20, f"a dead letter saying {reason!r}")
    else:
        assert "error" in answer.json()
    time.sleep(0.5)
    assert availability(world["odoo_bridge"], sku, world["stock"])["on_hand"] == 5


def _sign(body: bytes) -> str:
    import base64
    import hashlib
    import hmac
    return base64.b64encode(hmac.new(b.SECRETS["shopify_webhook_secret"].encode(), body, hashlib.sha256).digest()).decode()
