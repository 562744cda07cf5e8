#!/usr/bin/env python3
"""Benchmark: sale.order confirmation over JSON-RPC with and without stock_sync_bridge.

Same Odoo (ODOO_SRC, ODOO_PYTHON), same data, two databases copied from the same
template: one plain, one with the module installed (main warehouse and all storable
products synced). For each database: create the products and stock, create N draft
orders, confirm a few to warm up, then time ``action_confirm`` per order, sequentially,
over RPC. By default each order is confirmed on one database and then its twin on
the other (alternating which goes first), so machine noise hits both sides alike.

    ODOO_SRC=/work/odoo17 ODOO_PYTHON=/work/odoo-venv/bin/python \
        /work/odoo-venv/bin/python scripts/bench_odoo_confirm.py --orders 200 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(
    "odoo_it_server", HERE.parent / "tests" / "integration" / "odoo" / "server.py"
)
srv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(srv)

PRODUCTS = 20
WARMUP = 10


def seed(odoo, with_module: bool) -> tuple[int, int, list[int]]:
    """Products with plenty of stock; returns (warehouse, partner, product ids)."""
    wh = srv.call(odoo, "stock.warehouse", "search_read", [], ["lot_stock_id", "company_id"],
                  limit=1)[0]
    if with_module:
        srv.call(odoo, "res.company", "write", [wh["company_id"][0]],
                 {"stock_sync_warehouse_ids": [(6, 0, [wh["id"]])]})
        srv.call(odoo, "ir.config_parameter", "set_param",
                 "stock_sync_bridge.all_products", "True")
    products = [
        srv.call(odoo, "product.product", "create",
                 {"name": f"Bench {n}", "default_code": f"BENCH-{n}", **srv.storable()})
        for n in range(PRODUCTS)
    ]
    srv.call(odoo, "stock.quant", "create", [
        {"product_id": p, "location_id": wh["lot_stock_id"][0],
         "inventory_quantity_auto_apply": 100000} for p in products
    ], context={"inventory_mode": True})
    partner = srv.call(odoo, "res.partner", "create", {"name": "Bench Customer"})
    return wh["id"], partner, products


def draft_orders(odoo, wh, partner, products, count):
    return [
        srv.call(odoo, "sale.order", "create", {
            "partner_id": partner, "warehouse_id": wh,
            "order_line": [(0, 0, {"product_id": products[n % len(products)],
                                   "product_uom_qty": 1 + n % 3})],
        })
        for n in range(count)
    ]


def time_confirms(odoo, order_ids) -> list[float]:
    timings = []
    for order_id in order_ids:
        start = time.perf_counter()
        srv.call(odoo, "sale.order", "action_confirm", [order_id])
        timings.append(time.perf_counter() - start)
    return timings


class Target:
    """One database + server, seeded once."""

    def __init__(self, python, name, with_module):
        self.name, self.with_module = name, with_module
        srv.copy_db(name)
        if with_module:
            srv.install(python, name, "stock_sync_bridge")
        self.server = srv.OdooServer(python, name)
        self.odoo = self.server.client("admin", "admin")
        self.wh, self.partner, self.products = seed(self.odoo, with_module)
        time_confirms(self.odoo, draft_orders(self.odoo, self.wh, self.partner,
                                              self.products, WARMUP))

    def drafts(self, count):
        return draft_orders(self.odoo, self.wh, self.partner, self.products, count)

    def round(self, count):
        return time_confirms(self.odoo, self.drafts(count))

    def close(self):
        self.server.close()
        srv.drop_db(self.name)


def interleaved_round(targets, count, rnd):
    """Confirm order i on one database, then on the other (first one alternating):
    machine noise then hits both sides alike, which matters on a shared host."""
    drafts = [t.drafts(count) for t in targets]
    timings = [[] for _ in targets]
    for i in range(count):
        order = [0, 1] if (i + rnd) % 2 == 0 else [1, 0]
        for k in order:
            timings[k].extend(time_confirms(targets[k].odoo, [drafts[k][i]]))
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-interleave", dest="interleave", action="store_false",
                        help="time all orders of one database, then the other")
    args = parser.parse_args(argv)
    if srv.unavailable():
        print(srv.unavailable(), file=sys.stderr)
        return 2
    python = srv.prepare()
    targets = [Target(python, "stock_sync_bench_plain", False),
               Target(python, "stock_sync_bench_sync", True)]
    results = {t.name: [] for t in targets}
    try:
        for rnd in range(args.rounds):
            if args.interleave:
                timings = interleaved_round(targets, args.orders, rnd)
            else:
                timings = [t.round(args.orders) for t in (targets if rnd % 2 == 0 else targets[::-1])]
                timings = timings if rnd % 2 == 0 else timings[::-1]
            for target, tim in zip(targets, timings):
                results[target.name].append(tim)
                print(f"round {rnd + 1} {target.name}: {sum(tim):.2f} s "
                      f"for {len(tim)} orders", flush=True)
    finally:
        for target in targets:
            target.close()
    report(results, args.orders)
    return 0


def report(results, orders):
    rows = {}
    for name, rounds in results.items():
        flat = [t for r in rounds for t in r]
        rows[name] = (statistics.median(sum(r) for r in rounds), statistics.median(flat) * 1000)
        print(f"{name}: median total {rows[name][0]:.2f} s per {orders} orders, "
              f"median {rows[name][1]:.1f} ms per confirmation")
    (plain_total, plain_ms), (sync_total, sync_ms) = rows.values()
    plain, sync = ([t for r in rounds for t in r] for rounds in results.values())
    paired = statistics.median(s - p for p, s in zip(plain, sync)) * 1000
    print(f"median paired difference (sync - plain): {paired:+.1f} ms per confirmation")
    print(f"overhead: {100 * (sync_total - plain_total) / plain_total:+.1f}% (totals), "
          f"{100 * (sync_ms - plain_ms) / plain_ms:+.1f}% (per-order medians)")


if __name__ == "__main__":
    sys.exit(main())
