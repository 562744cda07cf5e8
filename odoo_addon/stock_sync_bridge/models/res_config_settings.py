# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models

PREFIX = "stock_sync_bridge."


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    stock_sync_bridge_url = fields.Char(
        "Bridge URL", config_parameter=PREFIX + "bridge_url"
    )
    stock_sync_shared_secret = fields.Char(
        "Shared Secret", config_parameter=PREFIX + "shared_secret"
    )
    stock_sync_all_products = fields.Boolean(
        "Sync All Storable Products", config_parameter=PREFIX + "all_products"
    )
    stock_sync_warehouse_ids = fields.Many2many(
        related="company_id.stock_sync_warehouse_ids", readonly=False
    )
    stock_sync_location_ids = fields.Many2many(
        related="company_id.stock_sync_location_ids", readonly=False
    )
    stock_sync_availability_basis = fields.Selection(
        [("free", "Free quantity"), ("on_hand", "On hand"), ("forecast", "Forecast")],
        "Availability Basis",
        default="free",
        config_parameter=PREFIX + "availability_basis",
    )
    stock_sync_display_inventory = fields.Selection(
        [
            ("no", "No"),
            ("quantity", "Yes, with quantity"),
            ("availability", "Yes, with availability only"),
        ],
        "Display Inventory",
        default="quantity",
        config_parameter=PREFIX + "display_inventory",
    )
    stock_sync_allow_backorders = fields.Boolean(
        "Allow Backorders", config_parameter=PREFIX + "allow_backorders"
    )
    stock_sync_unreachable_policy = fields.Selection(
        [
            ("reject", "Reject orders"),
            ("accept", 'Accept orders ("Availability could not be confirmed")'),
        ],
        "When Unreachable",
        default="accept",
        config_parameter=PREFIX + "unreachable_policy",
    )
    stock_sync_decrement_mode = fields.Selection(
        [("reserve", "Reserve (delivery waits)"), ("done", "Validate delivery")],
        "Channel Decrements",
        default="reserve",
        config_parameter=PREFIX + "decrement_mode",
    )
    stock_sync_done_origins = fields.Char(
        "Fulfilled-elsewhere Origins",
        config_parameter=PREFIX + "done_origins",
        help="Comma-separated prefixes of the sale order Source Document (for example "
        "'shopify,pos'): such orders validate their delivery at confirmation.",
    )
    stock_sync_marker_targets = fields.Char(
        "Availability Targets",
        config_parameter=PREFIX + "marker_targets",
        help="Comma-separated target names that must acknowledge every availability "
        "marker. Empty: the first acknowledgement completes it.",
    )
    stock_sync_journal_targets = fields.Char(
        "Journal Targets",
        config_parameter=PREFIX + "journal_targets",
        help="Comma-separated mirror names that must acknowledge every journal row.",
    )
