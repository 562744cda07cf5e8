# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import models

from . import compat


class IrUiView(models.Model):
    _inherit = "ir.ui.view"

    def _load_records(self, data_list, update=False):
        """This module's XML is written for 17.0; compat adapts it to the running version."""
        data_list = [compat.adapt_record(self.env, self._name, data) for data in data_list]
        return super()._load_records(data_list, update=update)
