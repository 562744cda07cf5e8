# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models

SYNC_SCOPE_FIELDS = ("stock_sync_warehouse_ids", "stock_sync_location_ids")


class ResCompany(models.Model):
    _inherit = "res.company"

    # Stored per company: which stock is synced is a multi-company decision.
    stock_sync_warehouse_ids = fields.Many2many(
        "stock.warehouse",
        "stock_sync_company_warehouse_rel",
        "company_id",
        "warehouse_id",
        string="Synced Warehouses",
        help="The stock location of each warehouse (and its children) is synced.",
    )
    stock_sync_location_ids = fields.Many2many(
        "stock.location",
        "stock_sync_company_location_rel",
        "company_id",
        "location_id",
        string="Synced Locations",
        domain=[("usage", "=", "internal")],
        help="Extra internal locations (with their children) that are synced.",
    )

    def write(self, vals):
        res = super().write(vals)
        if any(name in vals for name in SYNC_SCOPE_FIELDS):
            # the synced-location map is cached per registry
            self.env.registry.clear_cache()
        return res
