# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The module's screens in a real browser (Odoo's tour framework, Chromium): the Stock Sync
settings, a product's sync flag, the deliveries (dead letters) and a marker's per-target
states, on Odoo 17, 18 and 19 alike (static/tests/tours/stock_sync_tours.js)."""

from odoo import Command
from odoo.tests import HttpCase, tagged

from ..models import compat


def action_url(xmlid, res_id=None):
    """The web client's address of an action (and one record of it) on this version."""
    if compat.ODOO_MAJOR >= 18:
        return "/odoo/action-%s%s" % (xmlid, "/%d" % res_id if res_id else "")
    return "/web#action=%s%s" % (xmlid, "&id=%d&view_type=form" % res_id if res_id else "")


@tagged("post_install", "-at_install")
class TestScreens(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        env = cls.env
        cls.product = env["product.product"].create(
            {"name": "Tour Product", "default_code": "TOUR-SKU", **compat.storable_values(),
             "stock_sync_enabled": True}
        )
        warehouse = env["stock.warehouse"].search([("company_id", "=", env.company.id)], limit=1)
        env.company.stock_sync_warehouse_ids = [Command.set(warehouse.ids)]
        cls.marker = env["stock.sync.marker"].create(
            {"product_id": cls.product.id, "location_id": warehouse.lot_stock_id.id,
             "company_id": env.company.id, "origin": "S-TOUR", "sequence": 1}
        )
        env["stock.sync.delivery"].create([
            {"marker_id": cls.marker.id, "target": "shopify", "state": "dead", "attempts": 10,
             "sequence": 1, "last_error": "HTTP 422 inventory item not stocked at location"},
            {"marker_id": cls.marker.id, "target": "sap_b1", "state": "done", "attempts": 1,
             "sequence": 1},
        ])

    def test_settings(self):
        self.start_tour(action_url("stock.action_stock_config_settings"),
                        "stock_sync_settings_tour", login="admin")

    def test_product_sync_flag(self):
        template = self.product.product_tmpl_id
        self.start_tour(action_url("stock.product_template_action_product", template.id),
                        "stock_sync_product_tour", login="admin")
        self.assertFalse(template.stock_sync_enabled, "the tour unticked and saved the flag")

    def test_deliveries_and_dead_letters(self):
        self.start_tour(action_url("stock_sync_bridge.stock_sync_delivery_action"),
                        "stock_sync_deliveries_tour", login="admin")

    def test_reconciliation_differences(self):
        self.env["stock.sync.drift"]._replace("2026-11-30 01:00:00", ["shopify"], [
            {"system": "shopify", "item": "TOUR-SKU", "location": "gid://shopify/Location/1", "shows": "12",
             "should": "10", "cause": "changed on the platform (the bridge pushed 10; it shows 12)", "fixed": True}])
        self.start_tour(action_url("stock_sync_bridge.stock_sync_drift_action"),
                        "stock_sync_drift_tour", login="admin")

    def test_marker_per_target_states(self):
        self.start_tour(action_url("stock_sync_bridge.stock_sync_marker_action"),
                        "stock_sync_marker_tour", login="admin")
