# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models

MAX_ROWS = 5000  # per call: the bridge sends a long report in several calls


class StockSyncDrift(models.Model):
    """One difference of the bridge's last reconciliation: what a channel (or a mirror) shows
    against what the availability rule says it should show, with the likely cause. Only the
    last run per system is kept: each report replaces the rows of the systems it checked."""

    _name = "stock.sync.drift"
    _description = "Stock Sync Reconciliation Difference"
    _order = "product_id, system, location_code"

    run_at = fields.Datetime(required=True, index=True, string="Reconciled At")
    system = fields.Char(required=True, index=True, help="The channel or mirror, as the bridge names it.")
    sku = fields.Char(required=True, string="SKU")
    product_id = fields.Many2one("product.product", index=True, ondelete="cascade")
    location_code = fields.Char(string="Location", help="The location as the channel or mirror names it.")
    shows = fields.Char(help="What the system shows ('-': it does not list the item there).")
    should = fields.Char(string="Should Show", help="The rule's figure ('-': it cannot be known now).")
    cause = fields.Text(help="The likely cause, and what to do about it.")
    fixed = fields.Boolean(help="The bridge queued a correction (the channel is set to the rule's figure).")
    company_id = fields.Many2one("res.company", related="product_id.company_id", store=True)

    @api.model
    def _replace(self, run_at, systems, rows):
        """Drop the rows of ``systems`` from earlier runs (this one checked them again), then
        store ``rows`` (a long report comes in several calls with the same ``run_at``)."""
        self.search([("system", "in", list(systems)), ("run_at", "!=", run_at)]).unlink()
        skus = {row["item"] for row in rows}
        products = self.env["product.product"].with_context(active_test=False).search(
            [("default_code", "in", list(skus))])
        by_sku = {p.default_code: p.id for p in products}
        return self.create([{
            "run_at": run_at, "system": row["system"], "sku": row["item"],
            "product_id": by_sku.get(row["item"], False), "location_code": row.get("location") or False,
            "shows": _figure(row.get("shows")), "should": _figure(row.get("should")),
            "cause": row.get("cause") or False, "fixed": bool(row.get("fixed")),
        } for row in rows])


def _figure(value):
    return "-" if value in (None, "", "-") else str(value)
