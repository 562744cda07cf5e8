# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models

from . import compat
from .concurrency import execute_contended


class StockSyncApplied(models.Model):
    """Ledger of channel stock changes applied to Odoo, one row per external key.

    The unique constraint on ``key`` is what makes apply_stock_changes idempotent:
    a replay, or a concurrent duplicate in another transaction, cannot insert twice.
    """

    _name = "stock.sync.applied"
    _description = "Stock Sync Applied Channel Change"
    _order = "id desc"
    _rec_name = "key"

    key = fields.Char(required=True, readonly=True)
    kind = fields.Selection(
        [("decrement", "Decrement"), ("increment", "Increment")], required=True
    )
    product_id = fields.Many2one("product.product", required=True, index=True)
    location_id = fields.Many2one("stock.location", required=True)
    quantity = fields.Float(digits="Product Unit of Measure", required=True)
    channel = fields.Char(index=True)
    order_ref = fields.Char(index=True)
    occurred_at = fields.Char(help="As sent by the channel (ISO 8601).")
    move_ids = fields.Many2many("stock.move", string="Stock Moves", readonly=True)
    company_id = fields.Many2one("res.company", index=True)

    compat.sql_constraints(locals(), [
        ("key_uniq", "unique(key)", "This channel change was already applied."),
    ])

    @api.model
    def _claim(self, line, product, location):
        """Insert the ledger row first; None when the key exists (duplicate).

        ON CONFLICT DO NOTHING relies on the same unique index, so a concurrent
        duplicate waits for the first transaction and then finds the key taken.
        """
        execute_contended(
            self.env.cr,
            """
            INSERT INTO stock_sync_applied
                   (key, kind, product_id, location_id, quantity, channel, order_ref,
                    occurred_at, company_id, create_uid, create_date, write_uid,
                    write_date)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now() at time zone 'UTC',
                    %s, now() at time zone 'UTC')
            ON CONFLICT (key) DO NOTHING
            RETURNING id
            """,
            (
                line["key"], line["kind"], product.id, location.id, line["quantity"],
                line.get("channel"), line.get("order_ref"), line.get("occurred_at"),
                location.company_id.id or self.env.company.id, self.env.uid,
                self.env.uid,
            ),
        )
        row = self.env.cr.fetchone()
        return self.browse(row[0]) if row else None
