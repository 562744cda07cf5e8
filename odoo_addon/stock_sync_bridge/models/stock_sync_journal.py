# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models

from . import compat
from .stock_sync_marker import EVENT_STATES


class StockSyncJournal(models.Model):
    """One row per done stock move into or out of a synced location, for mirror ERPs.

    Never coalesced: mirrors need each move. The move id is the idempotency key the
    bridge quotes to the mirror (unique here too, so a move is journaled once).
    """

    _name = "stock.sync.journal"
    _inherit = ["stock.sync.event"]
    _sync_kind = "journal"
    _description = "Stock Sync Move Journal"
    _order = "id desc"

    move_id = fields.Many2one("stock.move", required=True, ondelete="restrict")
    product_id = fields.Many2one("product.product", required=True, index=True)
    sku = fields.Char(related="product_id.default_code", string="SKU")
    quantity = fields.Float(digits="Product Unit of Measure", required=True)
    uom_id = fields.Many2one("uom.uom", "Unit of Measure", required=True)
    location_id = fields.Many2one("stock.location", "From", required=True)
    location_dest_id = fields.Many2one("stock.location", "To", required=True)
    synced_location_id = fields.Many2one("stock.location", required=True)
    company_id = fields.Many2one("res.company", index=True)
    origin = fields.Char()
    reference = fields.Char()
    date = fields.Datetime(readonly=True)
    state = fields.Selection(EVENT_STATES, required=True, default="pending", index=True)
    sequence = fields.Integer(readonly=True)
    done_date = fields.Datetime(readonly=True)
    delivery_ids = fields.One2many("stock.sync.delivery", "journal_id", "Deliveries")

    compat.sql_constraints(locals(), [
        ("move_uniq", "unique(move_id)", "A stock move is journaled only once."),
    ])
