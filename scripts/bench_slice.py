#!/usr/bin/env python3
"""Benchmarks of the first end-to-end slice (issue 5). Prints figures; asserts nothing.

  .venv/bin/python scripts/bench_slice.py webhooks [--seconds 10] [--connections 16] [--skus 1]
      Sustained Shopify webhooks/s accepted (HMAC verified, normalised, durably stored, 200) by
      `erp-bridge serve`, driven by wrk (Debian package `wrk`) with pre-signed unique orders.
      The system of record is unreachable on purpose: intake must not depend on it, and the
      figure then measures intake alone. Counts the entries really stored in the queue.

  ODOO_SRC=/work/odoo17 .venv/bin/python scripts/bench_slice.py latency [--orders 500]
      Latency from an Odoo commit (sale.order confirmation over RPC) to the Shopify double
      holding the new figure, with the bridge running as in production; p50/p99.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.intake_world import intake_config  # noqa: E402  (bench_webhooks.py, bench_intake_cpu.py import it from here)

WEBHOOK_SECRET = "shpss_bench_secret"


def signed(order_id: int, skus: int = 1, secret: str = WEBHOOK_SECRET, sku: str = "BENCH-{n}") -> tuple[str, str]:
    """An ``orders/create`` body of one line and its signature. The line's SKU is ``sku`` with
    ``{n}`` the order's SKU number (1 to ``skus``)."""
    body = json.dumps({"id": order_id, "location_id": None, "line_items": [
        {"id": order_id * 10 + 1, "sku": sku.format(n=order_id % skus + 1), "variant_id": 1, "quantity": 1,
         "gift_card": False}]})
    sig = base64.b64encode(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()).decode()
    return body, sig


def lua_script(path: Path, count: int, skus: int = 1, secret: str = WEBHOOK_SECRET, sku: str = "BENCH-{n}",
               extra: str = "", first: int = 1_000_000) -> None:
    """A wrk script cycling through ``count`` distinct signed orders, numbered from ``first`` (no
    HMAC in wrk's Lua); ``extra``: more Lua (e.g. a ``delay`` function that paces the connections)."""
    rows = []
    for n in range(count):
        body, sig = signed(first + n, skus, secret, sku)
        rows.append(f"{{{json.dumps(body)},{json.dumps(sig)}}}")
    path.write_text("local r = {" + ",\n".join(rows) + "}\n" + """
local threads = 0
function setup(thread)
  thread:set("salt", threads)
  threads = threads + 1
end
local i = 0
local n = #r
request = function()
  i = i + 1
  local row = r[((i * 2 + salt) % n) + 1]  -- two threads: odd and even rows, never the same order
  return wrk.format("POST", "/webhooks/shopify", {["Content-Type"] = "application/json",
    ["X-Shopify-Topic"] = "orders/create", ["X-Shopify-Hmac-Sha256"] = row[2],
    ["X-Shopify-Webhook-Id"] = tostring(i)}, row[1])
end
""" + extra)


def run_webhooks(seconds: int, connections: int, skus: int) -> None:
    from tests.integration.odoo.bridge import wait_until
    from tests.integration.odoo.server import free_port

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp, port = Path(tmp_name), free_port()
        config = intake_config(tmp, port, skus)
        env = {**os.environ, "ERP_BRIDGE_SECRETS__ODOO_USER": "u", "ERP_BRIDGE_SECRETS__ODOO_PASSWORD": "p",
               "ERP_BRIDGE_SECRETS__SHOPIFY_TOKEN": "t", "ERP_BRIDGE_SECRETS__SHOPIFY_WEBHOOK_SECRET": WEBHOOK_SECRET}
        proc = subprocess.Popen([str(REPO / ".venv/bin/erp-bridge"), "--config", str(config), "serve"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import requests
            wait_until(lambda: _up(requests, port), 30, "the bridge")
            lua_script(tmp / "orders.lua", 60_000, skus)
            out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                                  "-s", str(tmp / "orders.lua"), f"http://127.0.0.1:{port}"],
                                 capture_output=True, text=True, check=True).stdout
            rss = _rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
        stored = sqlite3.connect(tmp / "data" / "queue.sqlite3").execute(
            "SELECT COUNT(*) FROM entries WHERE kind = 'decrement'").fetchone()[0]
    print(out)
    print(f"decrement entries durably stored: {stored} ({stored / seconds:.0f}/s over {seconds} s; "
          f"each also queued one availability entry per channel)")
    print(f"bridge RSS at the end of the run: {rss:.1f} MB")


def _up(requests, port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_latency(orders: int) -> None:
    from tests.fakes.http_target import FakeTarget
    from tests.fakes.sap_b1 import FakeServiceLayer
    from tests.fakes.shopify import FakeShopify
    from tests.integration.odoo import bridge as b
    from tests.integration.odoo import server as srv

    if srv.unavailable():
        sys.exit(srv.unavailable())
    python, db = srv.prepare(), f"bench_slice_{os.getpid()}"
    srv.copy_db(db)
    try:
        srv.install(python, db, "stock_sync_bridge")
        odoo = srv.OdooServer(python, db)
        try:
            _latency_run(odoo, orders, b, srv, FakeShopify, FakeServiceLayer, FakeTarget)
        finally:
            odoo.close()
    finally:
        srv.drop_db(db)


def _latency_run(odoo, orders, b, srv, FakeShopify, FakeServiceLayer, FakeTarget) -> None:
    admin = odoo.client("admin", "admin")
    ctx = _odoo_setup(admin, srv)
    stock, sku = ctx["stock"], "BENCH-LAT-1"
    product_id = srv.call(admin, "product.product", "create", {"name": sku, "default_code": sku, **srv.storable(),
                                                               "stock_sync_enabled": True})
    srv.call(admin, "stock.quant", "create", {"product_id": product_id, "location_id": ctx["stock_id"],
                                              "inventory_quantity_auto_apply": orders + 100},
             context={"inventory_mode": True})
    with FakeShopify(b.SECRETS["shopify_token"]) as shop, FakeServiceLayer() as sap, FakeTarget() as pos, \
            tempfile.TemporaryDirectory() as tmp:
        key = ("gid://shopify/InventoryItem/77", b.SHOP_LOCATION)
        shop.stock(*key, orders + 100)
        config = b.write_config(Path(tmp), odoo.port, odoo.db, stock, shop, sap, pos.url, {sku: "77"})
        bridge = b.start(config, "bench_bridge")
        try:
            for name, value in {"bridge_url": bridge.url, "shared_secret": b.SECRETS["odoo_nudge_secret"]}.items():
                srv.call(admin, "ir.config_parameter", "set_param", f"stock_sync_bridge.{name}", value)
            latencies = _orders(admin, srv, ctx, product_id, shop, key, orders)
        finally:
            bridge.stop()
    q = statistics.quantiles(latencies, n=100)
    print(f"orders: {len(latencies)}  commit -> Shopify figure: p50 {q[49] * 1000:.0f} ms, "
          f"p99 {q[98] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms, mean {statistics.mean(latencies) * 1000:.0f} ms")


def _odoo_setup(admin, srv) -> dict:
    wh_id = srv.call(admin, "stock.warehouse", "search", [], limit=1)[0]
    wh = srv.call(admin, "stock.warehouse", "read", [wh_id], ["lot_stock_id", "company_id"])[0]
    srv.call(admin, "res.company", "write", [wh["company_id"][0]], {"stock_sync_warehouse_ids": [(6, 0, [wh_id])]})
    group_id = admin.env.ref("stock_sync_bridge.group_bridge").id
    srv.call(admin, "res.users", "create", {"name": "Bench Bridge", "login": "bench_bridge",
                                            "password": "bridge-it-password", srv.groups_field(): [(6, 0, [group_id])]})
    stock = srv.call(admin, "stock.location", "read", [wh["lot_stock_id"][0]], ["complete_name"])[0]["complete_name"]
    return {"warehouse_id": wh_id, "stock_id": wh["lot_stock_id"][0], "stock": stock,
            "partner_id": srv.call(admin, "res.partner", "create", {"name": "Bench Customer"})}


def _orders(admin, srv, ctx, product_id, shop, key, orders) -> list[float]:
    """Sequential orders: each confirmation commits, then the time until Shopify shows it."""
    expected = orders + 100
    shop.wait_for(lambda s: s.levels[key] == expected, 30)
    latencies = []
    for n in range(orders):
        order_id = srv.call(admin, "sale.order", "create", {
            "partner_id": ctx["partner_id"], "warehouse_id": ctx["warehouse_id"],
            "order_line": [(0, 0, {"product_id": product_id, "product_uom_qty": 1})]})
        srv.call(admin, "sale.order", "action_confirm", [order_id])
        committed = time.monotonic()
        expected -= 1
        if not shop.wait_for(lambda s, expected=expected: s.levels[key] == expected, 10):
            print(f"order {n}: Shopify did not get {expected} within 10 s (it shows {shop.levels[key]})")
            continue
        latencies.append(time.monotonic() - committed)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    hooks = sub.add_parser("webhooks")
    hooks.add_argument("--seconds", type=int, default=10)
    hooks.add_argument("--connections", type=int, default=16)
    hooks.add_argument("--skus", type=int, default=1,
                       help="orders spread over this many SKUs (1: every order hits one hot SKU, so every "
                            "availability entry coalesces with a pending one: the worst case)")
    sub.add_parser("latency").add_argument("--orders", type=int, default=500)
    args = parser.parse_args()
    if args.mode == "webhooks":
        run_webhooks(args.seconds, args.connections, args.skus)
    else:
        run_latency(args.orders)


if __name__ == "__main__":
    main()
