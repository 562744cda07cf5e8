# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, models


class StockQuant(models.Model):
    _inherit = "stock.quant"

    @api.model
    def _update_available_quantity(self, product_id, location_id, *args, **kwargs):
        """Every quantity and reservation change of a quant passes here.

        Done moves, reservations, unreservations, inventory adjustments
        (_apply_inventory validates moves), scrap and returns all end up in this
        method, so hooking it catches changes made outside the stock.move hooks too
        (for example a move line edited by hand).
        """
        res = super()._update_available_quantity(product_id, location_id, *args, **kwargs)
        outbox = self.env["stock.sync.outbox"].sudo()
        outbox._mark([(product_id, location_id, outbox._context_origin() or "odoo")])
        return res
