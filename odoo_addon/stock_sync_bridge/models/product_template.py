# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models

from . import compat


class ProductTemplate(models.Model):
    _inherit = "product.template"

    stock_sync_enabled = fields.Boolean(
        "Stock Sync",
        help="Publish this product's availability to the stock-sync bridge "
        "(also on when the 'all storable products' setting is on).",
    )
    stock_sync_storable = fields.Boolean(
        compute="_compute_stock_sync_storable",
        help="Technical: the product keeps stock (shows the Stock Sync flag on every version).",
    )

    @api.depends(*compat.storable_fields())
    def _compute_stock_sync_storable(self):
        for template in self:
            template.stock_sync_storable = compat.is_storable(template)
