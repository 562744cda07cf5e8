# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class ProductTemplate(models.Model):
    _inherit = "product.template"

    stock_sync_enabled = fields.Boolean(
        "Stock Sync",
        help="Publish this product's availability to the stock-sync bridge "
        "(also on when the 'all storable products' setting is on).",
    )
