# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from .common import StockSyncCase


class TestConfirmation(StockSyncCase):
    def test_confirm_reserves_and_marks_with_order_origin(self):
        self._settle_markers()
        order = self._order(3)
        order.action_confirm()
        self.assertEqual(self._free(), 7, "free quantity drops at confirmation")
        self.assertEqual(self._on_hand(), 10)
        marker = self._pending()
        self.assertEqual(len(marker), 1)
        self.assertEqual(marker.origin, order.name)
        self.assertFalse(self.env["stock.sync.journal"].search(
            [("move_id", "in", order.order_line.move_ids.ids)]), "nothing done yet")

    def test_two_orders_one_pending_marker(self):
        self._settle_markers()
        first = self._order(2)
        first.action_confirm()
        sequence = self._pending().sequence
        second = self._order(1)
        second.action_confirm()
        marker = self._pending()
        self.assertEqual(len(marker), 1)
        self.assertGreater(marker.sequence, sequence)
        self.assertEqual(marker.origin, second.name)

    def test_manual_reservation_method_is_forced_for_synced_products(self):
        self.warehouse.out_type_id.reservation_method = "manual"
        synced, plain = self._order(4), self._order(4, product=self.other)
        (synced | plain).action_confirm()
        self.assertEqual(self._free(), 6)
        self.assertEqual(self._free(self.other), 10, "unsynced products keep Odoo's rule")

    def test_by_date_reservation_method_is_forced(self):
        self.warehouse.out_type_id.write(
            {"reservation_method": "by_date", "reservation_days_before": 0}
        )
        order = self._order(5, commitment_date="2999-01-01 00:00:00")
        order.action_confirm()
        self.assertEqual(self._free(), 5)

    def test_cancel_gives_stock_back_and_is_an_event(self):
        order = self._order(4)
        order.action_confirm()
        self._settle_markers()
        order._action_cancel()
        self.assertEqual(self._free(), 10)
        self.assertEqual(len(self._pending()), 1)

    def test_team_fulfilled_elsewhere_validates_delivery(self):
        team = self.env["crm.team"].create(
            {"name": "Web Store", "stock_sync_validate_on_confirm": True}
        )
        order = self._order(3, team_id=team.id)
        order.action_confirm()
        self.assertEqual(self._on_hand(), 7, "on hand drops at once")
        self.assertEqual(self._free(), 7)
        moves = order.order_line.move_ids
        self.assertEqual(moves.mapped("state"), ["done"])
        rows = self.env["stock.sync.journal"].search([("move_id", "in", moves.ids)])
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows.origin, order.name)
        # cancelling brings the goods back through a return move
        order._action_cancel()
        self.assertEqual(self._on_hand(), 10)
        returns = self.env["stock.sync.journal"].search(
            [("location_dest_id", "child_of", self.stock.id), ("origin", "=", "odoo:%s" % order.name)]
        )
        self.assertEqual(len(returns), 1)

    def test_origin_prefix_fulfilled_elsewhere(self):
        self._param("done_origins", "pos, shopify")
        order = self._order(2, origin="shopify #1001")
        order.action_confirm()
        self.assertEqual(self._on_hand(), 8)
        normal = self._order(2, origin="phone")
        normal.action_confirm()
        self.assertEqual(self._on_hand(), 8)
        self.assertEqual(self._free(), 6)

    def test_validate_delivery_journals_each_move(self):
        order = self._order(3)
        order.action_confirm()
        picking = order.picking_ids
        picking.move_ids.picked = True
        picking.button_validate()
        self.assertEqual(picking.state, "done")
        rows = self.env["stock.sync.journal"].search([("move_id", "in", picking.move_ids.ids)])
        self.assertEqual(len(rows), len(picking.move_ids))
        self.assertEqual(rows.quantity, 3)
        self.assertEqual(rows.location_id, self.stock)
