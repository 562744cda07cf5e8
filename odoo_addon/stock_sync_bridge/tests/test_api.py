# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from datetime import timedelta

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests.common import new_test_user

from ..models import compat
from .common import StockSyncCase


class TestApi(StockSyncCase):
    def setUp(self):
        super().setUp()
        self.api = self.env["stock.sync.api"].with_user(self.bridge_user)

    def _line(self, key, qty, kind="decrement", sku="SYNC-1", location="SYW"):
        return {"key": key, "kind": kind, "sku": sku, "location": location,
                "quantity": qty, "channel": "shopify", "order_ref": key.split(":")[1],
                "occurred_at": "2025-01-01T00:00:00Z"}

    def test_plain_user_is_refused(self):
        clerk = new_test_user(self.env, login="clerk", groups="base.group_user")
        for method, args in [("fetch_markers", ()), ("ack_markers", ([],)),
                             ("fetch_journal", ()), ("ack_journal", ([],)),
                             ("apply_stock_changes", ([],)), ("read_availability", ([],)),
                             ("read_settings", ()), ("report_drift", ("2026-11-30 10:00:00", ["x"], []))]:
            with self.subTest(method=method), self.assertRaises(AccessError):
                getattr(self.env["stock.sync.api"].with_user(clerk), method)(*args)

    def test_report_drift_keeps_the_last_run_per_system(self):
        drift = self.env["stock.sync.drift"]
        row = {"system": "shopify", "item": "SYNC-1", "location": "gid://shopify/Location/1", "shows": "12",
               "should": "10", "cause": "changed on the platform (the bridge pushed 10; it shows 12)", "fixed": True}
        other = dict(row, system="square", item="NOT-IN-ODOO", shows=None, fixed=False)
        self.assertEqual(self.api.report_drift("2026-11-30 01:00:00", ["shopify", "square"], [row, other]),
                         {"stored": 2})
        shown = drift.search([("system", "=", "shopify")])
        self.assertEqual((shown.product_id.default_code, shown.shows, shown.should, shown.fixed),
                         ("SYNC-1", "12", "10", True))
        self.assertFalse(drift.search([("system", "=", "square")]).product_id, "an unknown SKU is kept as text")
        self.assertEqual(drift.search([("system", "=", "square")]).shows, "-")
        # a later run of Shopify alone, in two calls: Shopify's rows are replaced, Square's stay
        self.api.report_drift("2026-11-30 02:00:00", ["shopify"], [dict(row, shows="11")])
        self.api.report_drift("2026-11-30 02:00:00", ["shopify"], [dict(row, location="gid://shopify/Location/2")])
        self.assertEqual(sorted(drift.search([("system", "=", "shopify")]).mapped("shows")), ["11", "12"])
        self.assertEqual(len(drift.search([("system", "=", "square")])), 1)
        self.api.report_drift("2026-11-30 03:00:00", ["shopify"], [])  # no difference any more
        self.assertFalse(drift.search([("system", "=", "shopify")]))

    def test_report_drift_input_errors(self):
        for args, message in [
            (("yesterday", ["shopify"], []), "run_at must be"),
            (("2026-11-30 01:00:00", [], []), "systems must be"),
            (("2026-11-30 01:00:00", ["shopify"], [{"system": "square", "item": "X"}]), "row 0 must be"),
        ]:
            with self.subTest(args=args), self.assertRaisesRegex(UserError, message):
                self.api.report_drift(*args)

    def test_fetch_markers_reads_availability_now(self):
        self._settle_markers()
        self._order(3).action_confirm()
        [marker] = [m for m in self.api.fetch_markers() if m["sku"] == "SYNC-1"]
        self.assertEqual(marker["location"], self.stock.complete_name)
        self.assertEqual(
            marker["availability"],
            {"on_hand": 10.0, "reserved": 3.0, "free": 7.0, "forecast": 7.0,
             "uom": "Units", "basis": "free", "available": 7.0, "restock_at": None},
        )
        # a later change is visible in the next fetch: figures are never stored
        self._order(2).action_confirm()
        [again] = [m for m in self.api.fetch_markers() if m["sku"] == "SYNC-1"]
        self.assertEqual(again["availability"]["free"], 5.0)
        self.assertGreater(again["sequence"], marker["sequence"])

    def test_ack_compare_and_set_on_sequence(self):
        [marker] = [m for m in self.api.fetch_markers() if m["sku"] == "SYNC-1"]
        self._order(1).action_confirm()  # bumps the marker after the read
        ack = {"id": marker["id"], "sequence": marker["sequence"], "target": "shopify",
               "state": "done"}
        self.assertEqual(self.api.ack_markers([ack])[0]["status"], "stale")
        self.assertEqual(self._pending().state, "pending")
        [fresh] = [m for m in self.api.fetch_markers() if m["sku"] == "SYNC-1"]
        ack["sequence"] = fresh["sequence"]
        self.assertEqual(self.api.ack_markers([ack])[0]["status"], "done")
        self.assertFalse(self._pending())

    def test_every_target_must_ack(self):
        self._param("marker_targets", "shopify, woo")
        [marker] = [m for m in self.api.fetch_markers() if m["sku"] == "SYNC-1"]
        base = {"id": marker["id"], "sequence": marker["sequence"]}
        res = self.api.ack_markers([dict(base, target="shopify", state="done")])
        self.assertEqual(res[0]["status"], "recorded")
        res = self.api.ack_markers([dict(base, target="woo", state="failed", error="503")])
        self.assertEqual(res[0]["status"], "recorded")
        delivery = self.env["stock.sync.delivery"].search([("target", "=", "woo")])
        self.assertEqual((delivery.state, delivery.last_error), ("pending", "503"))
        res = self.api.ack_markers([dict(base, target="woo", state="dead", error="SKU gone")])
        self.assertEqual(res[0]["status"], "done")
        self.assertEqual((delivery.state, delivery.attempts), ("dead", 2))
        # retry puts a pending marker back for the bridge
        delivery.action_retry()
        self.assertEqual(delivery.state, "pending")
        self.assertEqual(self._pending().origin, "retry")

    def test_late_ack_of_an_older_read_does_not_overwrite(self):
        self._param("marker_targets", "shopify, woo")
        [old] = [m for m in self.api.fetch_markers() if m["sku"] == "SYNC-1"]
        self._order(1).action_confirm()
        [new] = [m for m in self.api.fetch_markers() if m["sku"] == "SYNC-1"]
        ack = {"id": new["id"], "target": "shopify", "state": "done"}
        self.api.ack_markers([dict(ack, sequence=new["sequence"])])
        late = self.api.ack_markers([dict(ack, sequence=old["sequence"])])
        self.assertEqual(late[0]["status"], "stale")
        res = self.api.ack_markers([dict(ack, target="woo", sequence=new["sequence"])])
        self.assertEqual(res[0]["status"], "done", "shopify's newer result still counts")

    def test_ack_input_errors(self):
        res = self.api.ack_markers([{"id": 1}, {"id": 999999, "sequence": 1, "target": "x",
                                                "state": "done"},
                                    {"id": 1, "sequence": 1, "target": "x", "state": "dead"}])
        self.assertEqual([r["status"] for r in res], ["invalid", "unknown", "invalid"])

    def test_journal_fetch_and_ack(self):
        rows = [r for r in self.api.fetch_journal() if r["sku"] == "SYNC-1"]
        self.assertEqual(len(rows), 1)
        row = rows[0]
        self.assertEqual((row["quantity"], row["direction"]), (10.0, "in"))
        self.assertEqual(row["idempotency_key"], "odoo-move-%s" % row["move_id"])
        # the synced root, not the shelf the stock went to
        self.assertEqual(row["synced_location"], self.stock.complete_name)
        res = self.api.ack_journal([{"id": row["id"], "sequence": row["sequence"],
                                     "target": "sap", "state": "done"}])
        self.assertEqual(res[0]["status"], "done")
        # the delivery row says which product and kind of event it is (the Stock Sync list shows them)
        delivery = self.env["stock.sync.delivery"].search([("journal_id", "=", row["id"])])
        self.assertEqual((delivery.product_id, delivery.event_type, delivery.target),
                         (self.product, "journal", "sap"))
        self.assertNotIn(row["id"], [r["id"] for r in self.api.fetch_journal()])

    def test_apply_is_idempotent_and_marks_bridge_origin(self):
        self._settle_markers()
        lines = [self._line("shopify:1001:1", 2), self._line("shopify:1001:2", 1)]
        first = self.api.apply_stock_changes(lines)
        self.assertEqual([r["status"] for r in first], ["applied", "applied"])
        self.assertEqual(self._free(), 7)
        self.assertEqual(self._pending().origin, "bridge:shopify")
        second = self.api.apply_stock_changes(lines)
        self.assertEqual([r["status"] for r in second], ["duplicate", "duplicate"])
        self.assertEqual(self._free(), 7)

    def test_apply_rejections(self):
        res = self.api.apply_stock_changes([
            self._line("s:1:1", 1, sku="NOPE"),
            self._line("s:1:2", 1, sku="NOSYNC-1"),
            self._line("s:1:3", 1, location="Nowhere/Stock"),
            self._line("s:1:4", 11),
            self._line("s:1:5", 0),
            {"key": "s:1:6"},
        ])
        self.assertEqual(
            [r["status"] for r in res],
            ["unknown_product", "unknown_product", "unknown_location",
             "insufficient_stock", "invalid", "invalid"],
        )
        self.assertEqual(self._free(), 10)
        self.assertFalse(self.env["stock.sync.applied"].search([]), "rejections leave no key")

    def test_backorders_allowed_accepts_short_stock(self):
        self._param("allow_backorders", "True")
        res = self.api.apply_stock_changes([self._line("s:2:1", 12)])
        self.assertEqual(res[0]["status"], "applied")
        self.assertEqual(self._free(), 0)

    def test_decrement_done_mode_and_increment_release(self):
        self._param("decrement_mode", "done")
        self.api.apply_stock_changes([self._line("s:3:1", 4, location=self.stock.id)])
        self.assertEqual(self._on_hand(), 6)
        self._param("decrement_mode", "reserve")
        self.api.apply_stock_changes([self._line("s:4:1", 5, location=self.stock.complete_name)])
        self.assertEqual((self._on_hand(), self._free()), (6, 1))
        # cancelling 3 of order 4 releases its reservation; no receipt needed
        self.api.apply_stock_changes([self._line("s:4:c1", 3, kind="increment")])
        self.assertEqual((self._on_hand(), self._free()), (6, 4))
        # a return of order 3 (already shipped) receives the goods back
        self.api.apply_stock_changes([self._line("s:3:r1", 4, kind="increment")])
        self.assertEqual((self._on_hand(), self._free()), (10, 8))

    def test_read_availability_and_settings(self):
        res = self.api.read_availability(["SYNC-1", "NOPE"], ["SYW", "Nowhere"])
        statuses = sorted(r["status"] for r in res)
        self.assertEqual(statuses, ["ok", "unknown_location", "unknown_product"])
        ok = [r for r in res if r["status"] == "ok"][0]
        self.assertEqual(ok["availability"]["free"], 10.0)
        settings = self.api.read_settings()
        self.assertEqual(settings["unreachable_message"], "Availability could not be confirmed")
        self.assertNotIn("shared_secret", settings)
        self.assertIn(self.stock.id, [loc["id"] for loc in settings["locations"]])

    def test_restock_at_is_the_next_incoming_move(self):
        [before] = [r for r in self.api.read_availability(["SYNC-1"], ["SYW"]) if r["status"] == "ok"]
        self.assertIsNone(before["availability"]["restock_at"])
        supplier = self.env.ref("stock.stock_location_suppliers")
        customers = self.env.ref("stock.stock_location_customers")
        whens = []
        for days, source in ((9, supplier), (4, supplier), (2, customers)):  # a return is incoming too
            whens.append(fields.Datetime.now() + timedelta(days=days))
            self.env["stock.move"].create(compat.move_values("incoming", {
                "product_id": self.product.id, "product_uom_qty": 5,
                "product_uom": self.product.uom_id.id, "location_id": source.id,
                "location_dest_id": self.stock.id, "date": whens[-1]}))._action_confirm()
        # an internal move within the location restocks nothing
        self.env["stock.move"].create(compat.move_values("internal", {
            "product_id": self.product.id, "product_uom_qty": 1,
            "product_uom": self.product.uom_id.id, "location_id": self.shelf.id,
            "location_dest_id": self.stock.id, "date": fields.Datetime.now()}))._action_confirm()
        [after] = [r for r in self.api.read_availability(["SYNC-1"], ["SYW"]) if r["status"] == "ok"]
        self.assertEqual(after["availability"]["restock_at"], min(whens).isoformat())
