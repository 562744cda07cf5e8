# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
{
    "name": "Stock Sync Bridge",
    "summary": "Real-time stock sync: transactional outbox, move journal and "
    "an idempotent API for the stock-sync bridge",
    "version": "1.0.0",  # each Odoo prefixes its own series (17.0., 18.0., 19.0.)
    "category": "Inventory/Inventory",
    "website": "https://github.com/stock-sync/stock-sync",
    "author": "Stock Sync contributors",
    "license": "LGPL-3",
    "depends": ["sale_stock"],
    "data": [
        "security/stock_sync_security.xml",
        "security/ir.model.access.csv",
        "data/stock_sync_data.xml",
        "views/stock_sync_marker_views.xml",
        "views/stock_sync_journal_views.xml",
        "views/stock_sync_delivery_views.xml",
        "views/stock_sync_applied_views.xml",
        "views/stock_sync_drift_views.xml",
        "views/product_template_views.xml",
        "views/crm_team_views.xml",
        "views/res_config_settings_views.xml",
        "views/stock_sync_menus.xml",
    ],
    "assets": {
        "web.assets_tests": ["stock_sync_bridge/static/tests/tours/*.js"],
    },
}
