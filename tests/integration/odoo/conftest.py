"""Fixtures that run a real Odoo (ODOO_VERSION, default 17.0) with stock_sync_bridge installed.

The tree comes from ODOO_SRC, else from ../shared/odoo (scripts/odoo-prepare.sh unpacks it);
only where neither exists is every test here skipped, and the skip says so.
"""

from __future__ import annotations

import itertools
import os

import pytest

from . import server as srv

ADMIN = ("admin", "admin")  # the template is created without demo data: admin/admin
BRIDGE = ("stock_sync_it_bridge", "bridge-it-password")
_sku = itertools.count(1)


@pytest.fixture(scope="session")
def odoo_server():
    reason = srv.unavailable()
    if reason:
        pytest.skip(reason)
    python = srv.prepare()
    db = f"stock_sync_it_{os.getpid()}"
    srv.copy_db(db)
    server = None
    try:
        srv.install(python, db, "stock_sync_bridge")
        server = srv.OdooServer(python, db)
        yield server
        # contention (concurrent batches, acks racing marker bumps) is retried by Odoo quietly:
        # over the whole session its log must hold no ERROR line
        errors = [line for line in server.log_since(0).splitlines() if " ERROR " in line]
        assert errors == [], "ERROR lines in Odoo's log:\n" + "\n".join(errors[:20])
    finally:
        if server:
            server.close()
        srv.drop_db(db)


@pytest.fixture(scope="session")
def admin(odoo_server):
    return odoo_server.client(*ADMIN)


@pytest.fixture(scope="session")
def setup(odoo_server, admin):
    """Sync the main warehouse; create the integration user with only group_bridge."""
    wh_id = srv.call(admin, "stock.warehouse", "search", [], limit=1)[0]
    wh = srv.call(admin, "stock.warehouse", "read", [wh_id], ["code", "lot_stock_id", "company_id"])[0]
    srv.call(admin, "res.company", "write", [wh["company_id"][0]],
             {"stock_sync_warehouse_ids": [(6, 0, [wh_id])]})
    group_id = admin.env.ref("stock_sync_bridge.group_bridge").id
    srv.call(admin, "res.users", "create", {
        "name": "Stock Sync Bridge", "login": BRIDGE[0], "password": BRIDGE[1],
        srv.groups_field(): [(6, 0, [group_id])],
    })
    partner_id = srv.call(admin, "res.partner", "create", {"name": "IT Customer"})
    return {"warehouse_id": wh_id, "warehouse_code": wh["code"],
            "stock_id": wh["lot_stock_id"][0], "partner_id": partner_id}


@pytest.fixture(scope="session")
def bridge(odoo_server, setup):
    return odoo_server.client(*BRIDGE)


@pytest.fixture(scope="session")
def bridge_api_key(odoo_server, setup):
    """Odoo 19: an API key of the bridge user (JSON-2); None before 19 (JSON-RPC + password)."""
    if srv.major() < 19:
        return None
    return srv.generate_api_key(odoo_server.python, odoo_server.db, BRIDGE[0])


@pytest.fixture
def make_product(admin, setup):
    """A new synced product with ``qty`` on hand (through an applied inventory)."""

    def make(qty: float, sku: str | None = None):
        sku = sku or f"IT-{os.getpid()}-{next(_sku)}"
        product_id = srv.call(admin, "product.product", "create", {
            "name": sku, "default_code": sku, **srv.storable(), "stock_sync_enabled": True,
        })
        if qty:
            srv.call(admin, "stock.quant", "create", {
                "product_id": product_id, "location_id": setup["stock_id"],
                "inventory_quantity_auto_apply": qty,
            }, context={"inventory_mode": True})
        return product_id, sku

    return make


def availability(odoo, sku: str, location) -> dict:
    rows = srv.call(odoo, "stock.sync.api", "read_availability", [sku], [location])
    assert rows and rows[0]["status"] == "ok", rows
    return rows[0]["availability"]


def settle(bridge_client) -> None:
    """Acknowledge every pending marker and journal row (a clean slate per test)."""
    while markers := srv.call(bridge_client, "stock.sync.api", "fetch_markers", 500):
        srv.call(bridge_client, "stock.sync.api", "ack_markers", [
            {"id": m["id"], "sequence": m["sequence"], "target": "it", "state": "done"}
            for m in markers
        ])
    while rows := srv.call(bridge_client, "stock.sync.api", "fetch_journal", 500):
        srv.call(bridge_client, "stock.sync.api", "ack_journal", [
            {"id": r["id"], "sequence": r["sequence"], "target": "it", "state": "done"}
            for r in rows
        ])
