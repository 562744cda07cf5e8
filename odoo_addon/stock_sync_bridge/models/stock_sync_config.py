# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, models, tools

from .compat import is_storable

PREFIX = "stock_sync_bridge."


class StockSyncConfig(models.AbstractModel):
    """Reads the sync settings; every hook asks here, so the rules live in one place."""

    _name = "stock.sync.config"
    _description = "Stock Sync Settings Reader"

    @api.model
    def _param(self, name, default=False):
        # get_param is cached by the registry, so hooks may call this freely
        return self.env["ir.config_parameter"].sudo().get_param(PREFIX + name, default)

    @api.model
    def _flag(self, name):
        return self._param(name) in ("True", "true", "1")

    @api.model
    def _csv(self, name):
        raw = self._param(name) or ""
        return [item.strip() for item in raw.split(",") if item.strip()]

    @api.model
    @tools.ormcache()
    def _synced_roots(self):
        """((location_id, parent_path, company_id), ...) of every synced root location.

        Cached because quant hooks call it for every stock change; cleared when the
        synced warehouses or locations change (res.company.write).
        """
        cr = self.env.cr
        cr.execute(
            """
            SELECT l.id, l.parent_path, l.company_id FROM stock_location l
             WHERE l.id IN (
                SELECT location_id FROM stock_sync_company_location_rel
                 UNION
                SELECT w.lot_stock_id FROM stock_sync_company_warehouse_rel r
                  JOIN stock_warehouse w ON w.id = r.warehouse_id)
             ORDER BY l.id
            """
        )
        return tuple(cr.fetchall())

    @api.model
    def _roots_of(self, location):
        """Synced root ids containing ``location`` (nested roots give several)."""
        path = location.parent_path or ""
        return [
            root_id
            for root_id, root_path, _company in self._synced_roots()
            if path.startswith(root_path)
        ]

    @api.model
    def _root_company(self, root_id):
        for loc_id, _path, company_id in self._synced_roots():
            if loc_id == root_id:
                return company_id
        return None

    @api.model
    def _is_synced_product(self, product):
        if not product or not is_storable(product):
            return False
        return bool(product.product_tmpl_id.stock_sync_enabled) or self._flag(
            "all_products"
        )

    @api.model
    def _targets(self, kind):
        """Targets that must acknowledge a 'marker' or a 'journal' row."""
        return self._csv("marker_targets" if kind == "marker" else "journal_targets")

    @api.model
    def _allow_backorders(self):
        return self._flag("allow_backorders")

    @api.model
    def _decrement_done(self):
        return self._param("decrement_mode", "reserve") == "done"
