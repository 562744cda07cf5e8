# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class CrmTeam(models.Model):
    _inherit = "crm.team"

    stock_sync_validate_on_confirm = fields.Boolean(
        "Fulfilled Elsewhere",
        help="Orders of this team were already fulfilled (web store, POS): confirming "
        "them validates the delivery at once, so on-hand stock drops immediately.",
    )
