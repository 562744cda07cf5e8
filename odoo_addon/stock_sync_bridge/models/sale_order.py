# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import models


class SaleOrder(models.Model):
    _inherit = "sale.order"

    def _action_confirm(self):
        with self.env["stock.sync.outbox"].sudo()._deferred():
            res = super()._action_confirm()
            self._stock_sync_after_confirm()
        return res

    def _action_cancel(self):
        with self.env["stock.sync.outbox"].sudo()._deferred():
            # before super: Odoo only cancels the pickings that are not done yet
            self._stock_sync_return_fulfilled()
            return super()._action_cancel()

    def _stock_sync_moves(self):
        """Open outgoing moves of synced products leaving a synced location."""
        config = self.env["stock.sync.config"].sudo()
        return self.order_line.move_ids.filtered(
            lambda m: m.state in ("confirmed", "partially_available", "assigned")
            and config._is_synced_product(m.product_id)
            and config._roots_of(m.location_id)
        )

    def _stock_sync_fulfilled_elsewhere(self):
        """Orders whose goods already left (web store, POS): team flag or origin."""
        prefixes = tuple(self.env["stock.sync.config"].sudo()._csv("done_origins"))
        return self.filtered(
            lambda o: o.team_id.stock_sync_validate_on_confirm
            or (prefixes and (o.origin or "").startswith(prefixes))
        )

    def _stock_sync_after_confirm(self):
        moves = self._stock_sync_moves()
        if not moves:
            return
        # Odoo reserves at confirmation only for 'at_confirm' operation types. For
        # synced products the channels must see the order at once, so 'manual' and
        # 'by_date' types are reserved here too (documented in readme/USAGE.md).
        moves.filtered(
            lambda m: m.state != "assigned"
            and m.picking_type_id.reservation_method != "at_confirm"
        )._action_assign()
        fulfilled = self._stock_sync_fulfilled_elsewhere()
        if fulfilled:
            to_validate = moves.filtered(lambda m: m.sale_line_id.order_id in fulfilled)
            self.env["stock.sync.applier"].sudo()._validate_moves(to_validate)

    def _stock_sync_return_fulfilled(self):
        """Cancelling a fulfilled-elsewhere order brings its goods back (a return)."""
        applier = self.env["stock.sync.applier"].sudo()
        config = self.env["stock.sync.config"].sudo()
        for order in self.filtered(lambda o: o.state == "sale")._stock_sync_fulfilled_elsewhere():
            done = order.order_line.move_ids.filtered(
                lambda m: m.state == "done"
                and m.location_dest_id.usage == "customer"
                and config._is_synced_product(m.product_id)
                and config._roots_of(m.location_id)
            )
            for move in done:
                line = {"key": order.name, "quantity": move.product_qty,
                        "channel": "odoo", "order_ref": order.name}
                picking = applier._create_picking(
                    line, move.product_id, move.location_dest_id, move.location_id, "incoming"
                )
                applier._validate_moves(picking.move_ids)
