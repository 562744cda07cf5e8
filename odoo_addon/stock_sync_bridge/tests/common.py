# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import Command
from odoo.tests.common import TransactionCase, new_test_user

from ..models import compat


class StockSyncCase(TransactionCase):
    """Own warehouse, products and stock; no demo data is assumed."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True))
        cls.company = cls.env.company
        cls.warehouse = cls.env["stock.warehouse"].create(
            {"name": "Sync WH", "code": "SYW", "company_id": cls.company.id}
        )
        cls.stock = cls.warehouse.lot_stock_id
        cls.shelf = cls.env["stock.location"].create(
            {"name": "Shelf 1", "location_id": cls.stock.id, "usage": "internal"}
        )
        cls.company.stock_sync_warehouse_ids = [Command.set(cls.warehouse.ids)]
        cls.product = cls._product("SYNC-1", synced=True)
        cls.other = cls._product("NOSYNC-1", synced=False)
        cls.partner = cls.env["res.partner"].create({"name": "Sync Customer"})
        cls.bridge_user = new_test_user(
            cls.env, login="sync_bridge", groups="stock_sync_bridge.group_bridge"
        )
        cls._set_stock(cls.product, cls.shelf, 10)
        cls._set_stock(cls.other, cls.stock, 10)

    @classmethod
    def _product(cls, sku, synced):
        return cls.env["product.product"].create(
            {"name": sku, "default_code": sku, **compat.storable_values(),
             "stock_sync_enabled": synced}
        )

    @classmethod
    def _set_stock(cls, product, location, qty):
        """Through an inventory adjustment (real stock moves), like a user would."""
        quant = cls.env["stock.quant"].with_context(inventory_mode=True).create(
            {"product_id": product.id, "location_id": location.id, "inventory_quantity": qty}
        )
        quant.action_apply_inventory()

    def _param(self, name, value):
        self.env["ir.config_parameter"].sudo().set_param("stock_sync_bridge." + name, value)

    def _pending(self, product=None):
        return self.env["stock.sync.marker"].search(
            [("state", "=", "pending"), ("product_id", "=", (product or self.product).id)]
        )

    def _settle_markers(self):
        """Mark everything done so a test sees only the markers it causes."""
        self.env["stock.sync.marker"].search([]).write({"state": "done"})

    def _order(self, qty, product=None, **vals):
        order = self.env["sale.order"].create(
            dict(
                {
                    "partner_id": self.partner.id,
                    "warehouse_id": self.warehouse.id,
                    "order_line": [
                        Command.create(
                            {"product_id": (product or self.product).id, "product_uom_qty": qty}
                        )
                    ],
                },
                **vals,
            )
        )
        return order

    def _free(self, product=None, location=None):
        product = (product or self.product).with_context(location=(location or self.stock).id)
        product.invalidate_recordset(["free_qty", "qty_available"])
        return product.free_qty

    def _on_hand(self, product=None, location=None):
        product = (product or self.product).with_context(location=(location or self.stock).id)
        product.invalidate_recordset(["free_qty", "qty_available"])
        return product.qty_available
