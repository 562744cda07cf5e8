#!/usr/bin/env python3
"""SQL queries per sale.order confirmation, in process (deterministic, unlike timings).

Run with the Odoo interpreter against two databases copied from the same template,
one with stock_sync_bridge installed (see BENCHMARKS.md, Odoo section):

    /work/odoo-venv/bin/python scripts/odoo-bench-queries.py <db> [<db> ...]

Everything runs in one transaction that is rolled back: the databases are unchanged.
"""

import os
import sys
import time
from pathlib import Path

ODOO_SRC = os.environ.get("ODOO_SRC")
if not ODOO_SRC:
    sys.exit("ODOO_SRC is not set")
sys.path.insert(0, ODOO_SRC)
import odoo  # noqa: E402  (path set just above)
from odoo.tools import config  # noqa: E402

ADDONS = Path(__file__).resolve().parent.parent / "odoo_addon"
ORDERS, WARMUP = 100, 20


def measure(db):
    with odoo.registry(db).cursor() as cr:
        env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
        warehouse = env["stock.warehouse"].search([], limit=1)
        if "stock_sync_warehouse_ids" in env["res.company"]._fields:
            env.company.stock_sync_warehouse_ids = warehouse
            env["ir.config_parameter"].set_param("stock_sync_bridge.all_products", "True")
        products = env["product.product"].create(
            [{"name": f"Q{n}", "type": "product"} for n in range(5)])
        env["stock.quant"].with_context(inventory_mode=True).create([
            {"product_id": p.id, "location_id": warehouse.lot_stock_id.id,
             "inventory_quantity_auto_apply": 10000} for p in products])
        partner = env["res.partner"].create({"name": "Query bench"})
        orders = env["sale.order"].create([
            {"partner_id": partner.id, "warehouse_id": warehouse.id,
             "order_line": [(0, 0, {"product_id": products[n % 5].id, "product_uom_qty": 1})]}
            for n in range(ORDERS + WARMUP)])
        env.flush_all()
        for order in orders[:WARMUP]:
            order.action_confirm()
        env.flush_all()
        start_q, start_t = cr.sql_log_count, time.perf_counter()
        for order in orders[WARMUP:]:
            order.action_confirm()
            env.flush_all()
        elapsed = time.perf_counter() - start_t
        cr.rollback()
        return (cr.sql_log_count - start_q) / ORDERS, elapsed * 1000 / ORDERS


def main():
    config.parse_config([f"--addons-path={ODOO_SRC}/addons,{ODOO_SRC}/odoo/addons,{ADDONS}",
                         "--log-level=warn"])
    for db in sys.argv[1:]:
        queries, ms = measure(db)
        print(f"{db}: {queries:.2f} queries, {ms:.1f} ms per confirmation (in process)")


if __name__ == "__main__":
    main()
