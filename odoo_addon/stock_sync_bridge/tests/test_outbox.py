# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from psycopg2 import IntegrityError

from odoo.tools import mute_logger

from ..models import compat
from .common import StockSyncCase


class TestOutbox(StockSyncCase):
    def test_inventory_adjustment_marks_and_journals(self):
        """setUp's adjustment: a marker on the synced root, one journal row per move."""
        marker = self._pending()
        self.assertEqual(len(marker), 1)
        self.assertEqual(marker.location_id, self.stock, "coalesced on the synced root")
        self.assertEqual(marker.origin, "inventory")
        journal = self.env["stock.sync.journal"].search([("product_id", "=", self.product.id)])
        self.assertEqual(len(journal), 1)
        self.assertEqual(journal.quantity, 10)
        self.assertEqual(journal.location_dest_id, self.shelf)
        self.assertEqual(journal.synced_location_id, self.stock)

    def test_unsynced_product_and_location_leave_nothing(self):
        self.assertFalse(self._pending(self.other))
        self.assertFalse(
            self.env["stock.sync.journal"].search([("product_id", "=", self.other.id)])
        )
        # a synced product in a warehouse that does not sync
        other_wh = self.env["stock.warehouse"].search(
            [("company_id", "=", self.company.id), ("id", "!=", self.warehouse.id)], limit=1
        )
        self._settle_markers()
        self._set_stock(self.product, other_wh.lot_stock_id, 3)
        self.assertFalse(self._pending())

    def test_all_products_option(self):
        self._param("all_products", "True")
        self._set_stock(self.other, self.stock, 4)
        self.assertEqual(len(self._pending(self.other)), 1)

    def test_markers_coalesce_and_bump_sequence(self):
        first = self._pending()
        sequence = first.sequence
        self._set_stock(self.product, self.stock, 2)
        self._set_stock(self.product, self.shelf, 12)
        second = self._pending()
        self.assertEqual(second, first, "one pending row per (product, location)")
        self.assertGreater(second.sequence, sequence)

    def test_unique_pending_index_is_enforced_by_the_database(self):
        marker = self._pending()
        with self.assertRaises(IntegrityError), mute_logger("odoo.sql_db"):
            with self.env.cr.savepoint():
                self.env.cr.execute(
                    "INSERT INTO stock_sync_marker (product_id, location_id, state, sequence)"
                    " VALUES (%s, %s, 'pending', 1)",
                    (marker.product_id.id, marker.location_id.id),
                )

    def test_done_marker_gets_a_new_pending_row(self):
        marker = self._pending()
        marker.state = "done"
        self._set_stock(self.product, self.shelf, 9)
        new = self._pending()
        self.assertEqual(len(new), 1)
        self.assertNotEqual(new, marker)

    def test_scrap_journals_and_marks(self):
        self._settle_markers()
        scrap = self.env["stock.scrap"].create(
            {"product_id": self.product.id, "scrap_qty": 2, "location_id": self.shelf.id}
        )
        scrap.action_validate()
        self.assertEqual(self._pending().origin, scrap.name)
        row = self.env["stock.sync.journal"].search([("move_id", "=", scrap.move_ids.id)])
        self.assertEqual(row.quantity, 2)
        self.assertEqual(self._on_hand(), 8)

    def test_journal_converts_to_product_uom(self):
        dozen = self.env.ref("uom.product_uom_dozen")
        move = self.env["stock.move"].create(compat.move_values("in by dozen", {
            "product_id": self.product.id,
            "product_uom": dozen.id, "product_uom_qty": 1,
            "location_id": self.env.ref("stock.stock_location_suppliers").id,
            "location_dest_id": self.stock.id,
        }))
        move._action_confirm()
        move.quantity = 1
        move.picked = True
        move._action_done()
        row = self.env["stock.sync.journal"].search([("move_id", "=", move.id)])
        self.assertEqual(row.quantity, 12)
        self.assertEqual(row.uom_id, self.product.uom_id)

    def test_bridge_origin_from_context(self):
        self._settle_markers()
        quant = self.env["stock.quant"].with_context(
            inventory_mode=True, stock_sync_origin="bridge:shopify"
        ).create({"product_id": self.product.id, "location_id": self.shelf.id,
                  "inventory_quantity": 5})
        quant.with_context(stock_sync_origin="bridge:shopify").action_apply_inventory()
        self.assertEqual(self._pending().origin, "bridge:shopify")
        row = self.env["stock.sync.journal"].search([], limit=1)
        self.assertEqual(row.origin, "bridge:shopify")

    def test_deferred_operation_writes_once_and_nothing_on_error(self):
        outbox = self.env["stock.sync.outbox"]
        self._settle_markers()
        with self.assertRaises(ZeroDivisionError):
            with outbox._deferred():
                outbox._mark([(self.product, self.shelf, "S1")])
                _fail = 1 / 0
        self.assertFalse(self._pending(), "an operation that raised writes no marker")
        with outbox._deferred():
            outbox._mark([(self.product, self.shelf, "S2")])
            outbox._mark([(self.product, self.stock, "odoo")])  # weak origin: kept S2
            self.assertFalse(self._pending(), "written at the end of the operation")
        self.assertEqual(self._pending().origin, "S2")

    def test_nudge_registered_after_commit_only_once(self):
        self._param("bridge_url", "http://127.0.0.1:9")
        self.env.cr.postcommit.clear()
        self._set_stock(self.product, self.shelf, 3)
        self._set_stock(self.product, self.shelf, 4)
        self.assertEqual(len(self.env.cr.postcommit._funcs), 1)
        self.env.cr.postcommit.clear()
