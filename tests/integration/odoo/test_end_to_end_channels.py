"""Square, WooCommerce, BigCommerce (issue 12) and PrestaShop (issue 13: polled, no webhooks) with a
real Odoo as the system of record, end to end: Odoo (17, 18; 19 through JSON-2) with
stock_sync_bridge, the bridge as in production (`erp-bridge serve`, a subprocess), and the doubles
of Shopify, Square (history + signed notifications), WooCommerce (signed webhooks), BigCommerce
(Standard Webhooks callbacks whose order is fetched) and PrestaShop (orders polled by date_upd),
each mapped with the example mapping that ships. A sale on each channel, delivered twice (or, for
PrestaShop, read again after a status change), decrements Odoo once, and every other channel then
shows Odoo's figure. Skipped without ODOO_SRC."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.fakes import bigcommerce as bc
from tests.fakes import prestashop as ps
from tests.fakes import square_spec
from tests.fakes import woocommerce as woo
from tests.fakes.shopify import API_VERSION, FakeShopify, signed_webhook
from tests.fakes.square import LOCATION as SQUARE_LOCATION
from tests.fakes.square import NOTIFICATION_URL, FakeSquare, example_mapping_set

from . import bridge as b
from . import server as srv
from .conftest import BRIDGE, availability, settle

pytestmark = [pytest.mark.odoo, pytest.mark.skipif(not square_spec.available(), reason="../shared/specs is not present")]
CHANNELS = ("shopify", "square", "woocommerce", "bigcommerce", "prestashop")
SKUS = {channel: f"CH-{n}" for n, channel in enumerate(CHANNELS, 1)}
DRIFT = "CH-DRIFT"
SHOPIFY_IDS = {sku: str(8100 + n) for n, sku in enumerate([*SKUS.values(), DRIFT])}
WOO_IDS = {sku: 600 + n for n, sku in enumerate([*SKUS.values(), DRIFT])}
PRESTA_IDS = {sku: 700 + n for n, sku in enumerate([*SKUS.values(), DRIFT])}


def write_config(tmp: Path, odoo_port: int, db: str, stock: str, fakes: dict) -> Path:
    maps = tmp / "mappings"
    example_mapping_set(maps, fakes["square"].url, timeout_s=3, extra_items={s: s for s in [*SKUS.values(), DRIFT]})
    woo.write_mapping(maps, fakes["woocommerce"].url, timeout_s=3,
                      extra_items={sku: str(code) for sku, code in WOO_IDS.items()})
    bc.write_mapping(maps, fakes["bigcommerce"].url, timeout_s=3)
    ps.example_mapping_set(maps, fakes["prestashop"].url, timeout_s=3,
                           extra_items={sku: str(code) for sku, code in PRESTA_IDS.items()})
    auth = b.JSON2_AUTH if srv.major() >= 19 else b.SESSION_AUTH
    (maps / "odoo.yaml").write_text(b.ODOO.format(port=odoo_port, db=db, stock=stock, auth=auth))
    (maps / "shopify.yaml").write_text(b.SHOPIFY.format(url=fakes["shopify"].url, version=API_VERSION, stock=stock,
                                                        location=b.SHOP_LOCATION))
    (maps / "shopify_items.csv").write_text("sku,inventory_item_id\n" + "".join(
        f"{s},{i}\n" for s, i in SHOPIFY_IDS.items()))
    for name in ("square.yaml", "woocommerce.yaml", "bigcommerce.yaml", "prestashop.yaml"):  # Odoo's warehouse
        text = re.sub(r"(?m)^    - internal: WH2/Stock\n      code: .*\n", "", (maps / name).read_text())
        (maps / name).write_text(text.replace("internal: WH/Stock", f"internal: {stock}"))
    port = srv.free_port()
    (tmp / "bridge.yaml").write_text(
        f"data_dir: data\nmappings_dir: mappings\nhttp: {{port: {port}}}\n"
        "workers: {count: 2, poll_interval_s: 0.05, outbox_poll_s: 0.5, channel_poll_s: 1}\n"
        "retry: {base_s: 0.2, cap_s: 2, max_attempts: 30}\nqueue: {lease_s: 15}\n")
    return tmp / "bridge.yaml"


@pytest.fixture(scope="module")
def world(odoo_server, admin, setup, bridge, bridge_api_key, tmp_path_factory):
    settle(bridge)  # earlier tests' outbox rows are not this bridge's business
    stock = srv.call(admin, "stock.location", "read", [setup["stock_id"]], ["complete_name"])[0]["complete_name"]
    fakes = {"shopify": FakeShopify(b.SECRETS["shopify_token"]), "square": FakeSquare(),
             "woocommerce": woo.stocked_shop(), "bigcommerce": bc.stocked_store(), "prestashop": ps.FakePrestaShop()}
    for fake in fakes.values():
        fake.__enter__()
    tmp = tmp_path_factory.mktemp("channels")
    config = write_config(tmp, odoo_server.port, odoo_server.db, stock, fakes)
    env = {f"ERP_BRIDGE_SECRETS__{k.upper()}": v for k, v in {**woo.SECRETS, **bc.SECRETS}.items()}
    env["ERP_BRIDGE_SECRETS__PRESTASHOP_WEBSERVICE_KEY"] = fakes["prestashop"].key
    env.update(ERP_BRIDGE_SECRETS__SQUARE_TOKEN=fakes["square"].token,
               ERP_BRIDGE_SECRETS__SQUARE_WEBHOOK_SIGNATURE_KEY=fakes["square"].signature_key)
    proc = b.start(config, BRIDGE[0], bridge_api_key, env)
    yield {**fakes, "bridge": proc, "stock": stock, "odoo": bridge, "admin": admin, "config": config,
           "env": b.environment(BRIDGE[0], bridge_api_key, env)}
    proc.stop()
    keep = tmp_path_factory.getbasetemp().parent / "erp-bridge-e2e-channels.log"
    keep.write_text(proc.log_text())
    for fake in fakes.values():
        fake.__exit__(None, None, None)
    assert fakes["square"].violations == []


def listed(world, sku: str) -> dict[str, int | None]:
    """What each channel shows for ``sku`` now."""
    square = world["square"].counts.get((sku, SQUARE_LOCATION))
    return {"shopify": world["shopify"].levels.get((f"gid://shopify/InventoryItem/{SHOPIFY_IDS[sku]}",
                                                    b.SHOP_LOCATION)),
            "square": None if square is None else int(square),
            "woocommerce": world["woocommerce"].stock(str(WOO_IDS[sku])),
            "bigcommerce": world["bigcommerce"].stock.get((sku, 1)),
            "prestashop": world["prestashop"].quantity(PRESTA_IDS[sku])}


def stocked(world, make_product, sku: str, qty: int) -> None:
    """``qty`` in Odoo, and every channel listing the product at that figure already."""
    make_product(qty, sku=sku)
    world["shopify"].stock(f"gid://shopify/InventoryItem/{SHOPIFY_IDS[sku]}", b.SHOP_LOCATION, qty)
    world["square"].stock(sku, qty)
    world["woocommerce"].add_product(WOO_IDS[sku], sku, qty)
    world["bigcommerce"].stock[(sku, 1)] = qty
    world["prestashop"].add_stock(PRESTA_IDS[sku], 0, qty)


def sell(world, channel: str, sku: str, qty: int):
    """One sale on ``channel`` as the platform delivers it; returns a function that redelivers it."""
    post = world["bridge"].post_webhook
    if channel == "shopify":
        order = {"id": 9101, "location_id": None, "line_items": [
            {"id": 91011, "sku": sku, "variant_id": 1, "quantity": qty, "gift_card": False}]}
        return lambda n: post("shopify", *signed_webhook(b.SECRETS["shopify_webhook_secret"], "orders/create",
                                                         order, f"wh-9101-{n}"))
    if channel == "square":
        body = world["square"].sell(sku, qty, "txn-9102")
        headers = {"Content-Type": "application/json",
                   "x-square-hmacsha256-signature": world["square"].sign(NOTIFICATION_URL, body)}
        return lambda n: post("square", headers, body)
    if channel == "woocommerce":
        order = woo.order(9103, "processing", (91031, sku, qty))
        return lambda n: post("woocommerce", *woo.signed_delivery(woo.WEBHOOK_SECRET, "order.created", order))
    if channel == "bigcommerce":
        world["bigcommerce"].add_order(9104, 11, (91041, sku, qty))  # 11: Awaiting Fulfillment
        return lambda n: post("bigcommerce", *bc.signed_callback(bc.CLIENT_SECRET, "store/order/created", 9104))
    return lambda n: _presta_order(world["prestashop"], PRESTA_IDS[sku], qty, n)


class _Polled:
    """What a polled platform answers a sale with: nothing (the bridge reads its orders)."""
    status_code, text = 200, ""


def _presta_order(shop, product: int, qty: int, n: int) -> _Polled:
    """The order is placed (state 2, payment accepted), then moves to state 3 (processing): the
    poller reads it twice, with the same lines."""
    if n == 0:
        ps.wait_a_second()  # after the poller's first pass, which started the cursor "now"
        shop.place_order([(product, 0, qty)], state=2)
    else:
        ps.wait_a_second()
        shop.set_state(max(shop.orders), 3)
    return _Polled()


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_sale_on_each_channel_decrements_odoo_once_and_every_channel_follows(world, make_product, channel):
    sku = SKUS[channel]
    stocked(world, make_product, sku, 10)
    deliver = sell(world, channel, sku, 2)
    for n in range(2):  # delivered, then delivered again (a redelivery, or a platform's duplicate)
        answer = deliver(n)
        assert answer.status_code == 200, answer.text
    b.wait_until(lambda: availability(world["odoo"], sku, world["stock"])["free"] == 8, 30,
                 f"Odoo to apply the {channel} sale", detail=lambda: world["bridge"].log_text()[-2000:])
    b.wait_until(lambda: set(listed(world, sku).values()) == {8}, 30, "every channel to show 8",
                 detail=lambda: listed(world, sku))
    time.sleep(2.0)  # give a double count every chance to show before asserting it did not happen
    assert availability(world["odoo"], sku, world["stock"])["free"] == 8
    assert set(listed(world, sku).values()) == {8}
    dead = world["bridge"].admin("/admin/dead-letters")["entries"]
    assert [e for e in dead if sku in json.dumps(e)] == []


def reconcile(world, *options: str) -> list[dict]:
    """`erp-bridge reconcile --format json` beside the running service (as an operator runs it);
    the differences of the drift test's SKU."""
    done = subprocess.run([b.ERP_BRIDGE, "--config", str(world["config"]), "reconcile", "--format", "json", *options],
                          env=world["env"], cwd=world["config"].parent, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return [d for d in json.loads(done.stdout)["differences"] if d["item"] == DRIFT]


def drift_in_odoo(world) -> list[tuple]:
    rows = srv.call(world["admin"], "stock.sync.drift", "search_read", [("sku", "=", DRIFT)],
                    ["system", "shows", "should", "fixed", "cause", "product_id"])
    return sorted((r["system"], r["shows"], r["should"], r["fixed"], bool(r["product_id"])) for r in rows)


def test_drift_made_on_the_platforms_is_reported_in_odoo_and_fixed_once(world, make_product):
    """A merchant edits stock on every platform (Shopify's admin, a recount at the Square till,
    WooCommerce's and BigCommerce's product pages): reconciliation reports each with its cause, in
    the bridge's report and in Odoo (Stock Sync > Reconciliation), corrects each through the queue
    (set back to Odoo's figure once), and the next run finds nothing left, in the report or in Odoo."""
    stocked(world, make_product, DRIFT, 6)
    b.wait_until(lambda: all(f'"message": "delivery {c} {c}:odoo:availability:{DRIFT}@' in world["bridge"].log_text()
                             for c in CHANNELS), 30, "the bridge's first delivery of Odoo's 6 to every channel")
    world["shopify"].stock(f"gid://shopify/InventoryItem/{SHOPIFY_IDS[DRIFT]}", b.SHOP_LOCATION, 9)
    world["square"].stock(DRIFT, 2)
    world["woocommerce"].products[WOO_IDS[DRIFT]]["stock_quantity"] = 4
    world["bigcommerce"].stock[(DRIFT, 1)] = 11
    started = time.monotonic()
    found = reconcile(world, "--fix")
    print(f"reconcile --fix took {time.monotonic() - started:.1f} s")
    assert sorted((d["system"], d["shows"], d["should"], d["fixed"]) for d in found) == [
        ("bigcommerce", "11", "6", True), ("shopify", "9", "6", True), ("square", "2", "6", True),
        ("woocommerce", "4", "6", True)]
    assert all("changed on the platform" in d["cause"] for d in found), [d["cause"] for d in found]
    assert drift_in_odoo(world) == [("bigcommerce", "11", "6", True, True), ("shopify", "9", "6", True, True),
                                    ("square", "2", "6", True, True), ("woocommerce", "4", "6", True, True)]
    b.wait_until(lambda: set(listed(world, DRIFT).values()) == {6}, 30, "every channel back at 6",
                 detail=lambda: listed(world, DRIFT))
    corrections = [m for m in world["shopify"].mutations() if SHOPIFY_IDS[DRIFT] in json.dumps(m)]
    assert reconcile(world) == [] and drift_in_odoo(world) == []
    time.sleep(1.0)
    assert [m for m in world["shopify"].mutations() if SHOPIFY_IDS[DRIFT] in json.dumps(m)] == corrections
