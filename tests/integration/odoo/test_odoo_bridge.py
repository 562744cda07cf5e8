"""Real Odoo (17, 18, 19) + PostgreSQL, driven over JSON-RPC with odoorpc (issue 4, "Must show")."""

from __future__ import annotations

import multiprocessing

import pytest

from . import server as srv
from .conftest import BRIDGE, availability, settle

pytestmark = pytest.mark.odoo
API = "stock.sync.api"


def _confirm_order(admin, setup, product_id, qty):
    order_id = srv.call(admin, "sale.order", "create", {
        "partner_id": setup["partner_id"], "warehouse_id": setup["warehouse_id"],
        "order_line": [(0, 0, {"product_id": product_id, "product_uom_qty": qty})],
    })
    srv.call(admin, "sale.order", "action_confirm", [order_id])
    return srv.call(admin, "sale.order", "read", [order_id], ["name", "picking_ids"])[0]


def _markers_for(bridge, sku):
    return [m for m in srv.call(bridge, API, "fetch_markers", 500) if m["sku"] == sku]


def test_stock_10_confirm_orders_fetch_and_ack_markers(admin, bridge, setup, make_product):
    product_id, sku = make_product(10)
    settle(bridge)
    first = _confirm_order(admin, setup, product_id, 3)
    second = _confirm_order(admin, setup, product_id, 2)

    [marker] = _markers_for(bridge, sku)  # coalesced: one row for both orders
    assert marker["origin"] == second["name"] != first["name"]
    assert marker["location_id"] == setup["stock_id"]
    assert marker["availability"] == {
        "on_hand": 10.0, "reserved": 5.0, "free": 5.0, "forecast": 5.0,
        "uom": "Units", "basis": "free", "available": 5.0, "restock_at": None,
    }
    ack = {"id": marker["id"], "sequence": marker["sequence"], "target": "shopify",
           "state": "done"}
    assert srv.call(bridge, API, "ack_markers", [ack])[0]["status"] == "done"
    assert _markers_for(bridge, sku) == []


def test_stale_ack_keeps_marker_pending(admin, bridge, setup, make_product):
    product_id, sku = make_product(10)
    settle(bridge)
    _confirm_order(admin, setup, product_id, 1)
    [read] = _markers_for(bridge, sku)
    _confirm_order(admin, setup, product_id, 1)  # changes after the bridge's read
    ack = {"id": read["id"], "sequence": read["sequence"], "target": "shopify",
           "state": "done"}
    assert srv.call(bridge, API, "ack_markers", [ack])[0]["status"] == "stale"
    [again] = _markers_for(bridge, sku)
    assert again["id"] == read["id"] and again["sequence"] > read["sequence"]
    assert again["availability"]["free"] == 8.0


def test_validated_delivery_gives_one_journal_row_per_move(admin, bridge, setup, make_product):
    p1, sku1 = make_product(10)
    p2, sku2 = make_product(10)
    settle(bridge)
    order_id = srv.call(admin, "sale.order", "create", {
        "partner_id": setup["partner_id"], "warehouse_id": setup["warehouse_id"],
        "order_line": [(0, 0, {"product_id": p1, "product_uom_qty": 2}),
                       (0, 0, {"product_id": p2, "product_uom_qty": 3})],
    })
    srv.call(admin, "sale.order", "action_confirm", [order_id])
    [picking_id] = srv.call(admin, "sale.order", "read", [order_id], ["picking_ids"])[0]["picking_ids"]
    move_ids = srv.call(admin, "stock.picking", "read", [picking_id], ["move_ids"])[0]["move_ids"]
    srv.call(admin, "stock.move", "write", move_ids, {"picked": True})
    assert srv.call(admin, "stock.picking", "button_validate", [picking_id]) is True

    rows = srv.call(bridge, API, "fetch_journal", 500)
    mine = sorted((r["move_id"], r["sku"], r["quantity"], r["direction"]) for r in rows
                  if r["move_id"] in move_ids)
    assert [(m[1], m[2], m[3]) for m in mine] == [(sku1, 2.0, "out"), (sku2, 3.0, "out")]
    assert sorted(m[0] for m in mine) == sorted(move_ids)
    assert all(r["idempotency_key"] == f"odoo-move-{r['move_id']}" for r in rows)
    acks = [{"id": r["id"], "sequence": r["sequence"], "target": "sap", "state": "done"}
            for r in rows]
    assert {a["status"] for a in srv.call(bridge, API, "ack_journal", acks)} == {"done"}
    assert srv.call(bridge, API, "fetch_journal", 500) == []


def test_same_decrement_batch_twice_is_applied_once(bridge, setup, make_product):
    _product_id, sku = make_product(10)
    batch = [{"key": f"shopify:{sku}:{n}", "kind": "decrement", "sku": sku,
              "location": setup["warehouse_code"], "quantity": 2, "channel": "shopify",
              "order_ref": sku, "occurred_at": "2025-01-01T00:00:00Z"} for n in (1, 2)]
    first = srv.call(bridge, API, "apply_stock_changes", batch)
    second = srv.call(bridge, API, "apply_stock_changes", batch)
    assert [r["status"] for r in first] == ["applied", "applied"]
    assert [r["status"] for r in second] == ["duplicate", "duplicate"]
    assert availability(bridge, sku, setup["warehouse_code"])["free"] == 6.0
    [marker] = _markers_for(bridge, sku)
    assert marker["origin"] == "bridge:shopify"  # the bridge will not echo it back


def _send_batch(port, db, sku, location, prefix, start, queue):
    """Child process: own connection, wait for the sibling, then send the batch."""
    import odoorpc

    odoo = odoorpc.ODOO("127.0.0.1", port=port, timeout=120)
    odoo.login(db, *BRIDGE)
    lines = [{"key": f"{prefix}:{sku}:{n}", "kind": "decrement", "sku": sku,
              "location": location, "quantity": 1, "channel": prefix,
              "order_ref": f"{sku}-{n}"} for n in range(4)]
    start.wait(timeout=60)
    queue.put(odoo.execute_kw(API, "apply_stock_changes", [lines], {}))


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_batches_never_drive_free_stock_below_zero(
    odoo_server, bridge, setup, make_product, round_
):
    _product_id, sku = make_product(5)  # 5 units, 2 x 4 requested
    log_start = odoo_server.log_size()
    ctx = multiprocessing.get_context("fork")
    start, queue = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_send_batch, args=(odoo_server.port, odoo_server.db, sku,
                                              setup["warehouse_code"], f"ch{n}", start, queue))
        for n in (1, 2)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    statuses = [r["status"] for batch in results for r in batch]
    assert statuses.count("applied") == 5, statuses
    assert statuses.count("insufficient_stock") == 3, statuses
    figures = availability(bridge, sku, setup["warehouse_code"])
    assert figures["free"] == 0.0 and figures["reserved"] == 5.0, figures
    # the loser's serialization failure is retried by Odoo quietly: no ERROR line in its log
    errors = [line for line in odoo_server.log_since(log_start).splitlines() if " ERROR " in line]
    assert errors == [], errors


def test_rolled_back_transaction_leaves_no_event(admin, bridge, setup, make_product):
    product_id, sku = make_product(0)
    settle(bridge)
    good = {"product_id": product_id, "location_id": setup["stock_id"],
            "inventory_quantity_auto_apply": 7}
    view_location = srv.call(admin, "stock.location", "search", [("usage", "=", "view")], limit=1)
    bad = dict(good, location_id=view_location[0])  # Odoo refuses quants in a view location
    with pytest.raises(Exception):  # odoorpc.error.RPCError, raised after the move is done
        srv.call(admin, "stock.quant", "create", [good, bad], context={"inventory_mode": True})
    assert _markers_for(bridge, sku) == []
    assert [r for r in srv.call(bridge, API, "fetch_journal", 500) if r["sku"] == sku] == []
    assert availability(bridge, sku, setup["warehouse_code"])["on_hand"] == 0.0
    # control: the same call without the failing record does leave both events
    srv.call(admin, "stock.quant", "create", [good], context={"inventory_mode": True})
    assert len(_markers_for(bridge, sku)) == 1
    assert len([r for r in srv.call(bridge, API, "fetch_journal", 500) if r["sku"] == sku]) == 1


def test_stock_user_cannot_call_the_api(odoo_server, admin):
    import odoorpc

    # explicit groups: Odoo's default user template makes new users stock managers
    groups = [admin.env.ref(x).id for x in ("base.group_user", "stock.group_stock_user")]
    srv.call(admin, "res.users", "create", {"name": "Clerk", "login": "it_clerk",
                                            "password": "it-clerk-pw",
                                            srv.groups_field(): [(6, 0, groups)]})
    clerk = odoo_server.client("it_clerk", "it-clerk-pw")
    with pytest.raises(odoorpc.error.RPCError, match="Only the stock sync bridge user"):
        srv.call(clerk, API, "fetch_markers", 10)
