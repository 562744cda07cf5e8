# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from collections import defaultdict

from odoo import api, models
from odoo.tools import float_round

from .stock_sync_applier import LineRejected

QTY_FIELDS = ["qty_available", "free_qty", "virtual_available"]
BASIS_FIELD = {"free": "free", "on_hand": "on_hand", "forecast": "forecast"}


class StockSyncAvailability(models.AbstractModel):
    """Reads availability *now*, per synced location including its children."""

    _name = "stock.sync.availability"
    _description = "Stock Sync Availability Reader"

    @api.model
    def _read_pairs(self, pairs):
        """{(product_id, location_id): availability dict} for (product, location) pairs.

        Grouped by location so Odoo computes each location's quantities in one query.
        Figures are floats rounded with the product UoM rounding.
        """
        by_location = defaultdict(lambda: self.env["product.product"])
        for product, location in pairs:
            by_location[location] |= product
        result = {}
        for location, products in by_location.items():
            located = products.with_context(location=location.id)
            # never serve figures cached earlier in this transaction
            located.invalidate_recordset(QTY_FIELDS)
            restock = self._restock_dates(products, location)
            for product in located:
                figures = self._figures(product)
                figures["restock_at"] = restock.get(product.id)
                result[(product.id, location.id)] = figures
        return result

    @api.model
    def _restock_dates(self, products, location):
        """{product id: ISO date of the next move into ``location`` from outside it}.

        One grouped query per location; only moves still to come (confirmed, waiting or
        assigned) count, and a move inside the location is no restock.
        """
        domain = [
            ("product_id", "in", products.ids),
            ("location_dest_id", "child_of", location.id),
            ("location_id.parent_path", "not like", "%s%%" % location.parent_path),
            ("state", "in", ("waiting", "confirmed", "partially_available", "assigned")),
        ]
        groups = self.env["stock.move"]._read_group(domain, ["product_id"], ["date:min"])
        return {product.id: date.isoformat() for product, date in groups if date}

    @api.model
    def _figures(self, product):
        rounding = product.uom_id.rounding
        on_hand = float_round(product.qty_available, precision_rounding=rounding)
        free = float_round(product.free_qty, precision_rounding=rounding)
        figures = {
            "on_hand": on_hand,
            "reserved": float_round(on_hand - free, precision_rounding=rounding),
            "free": free,
            "forecast": float_round(product.virtual_available, precision_rounding=rounding),
            "uom": product.uom_id.name,
        }
        basis = self.env["stock.sync.config"]._param("availability_basis", "free")
        figures["basis"] = basis
        figures["available"] = figures[BASIS_FIELD.get(basis, "free")]
        return figures

    @api.model
    def _free_qty(self, product, location):
        """Free quantity right now, for the insufficient-stock check."""
        located = product.with_context(location=location.id)
        located.invalidate_recordset(["free_qty"])
        return located.free_qty

    @api.model
    def _read_skus(self, skus, location_refs=None):
        """[{sku, location, status, availability?}] for each SKU x location."""
        applier = self.env["stock.sync.applier"]
        locations, answers = self._locations(location_refs)
        for sku in skus:
            try:
                product = applier._resolve_product(str(sku))
            except LineRejected as rejected:
                answers.append({"sku": sku, "status": rejected.status, "detail": rejected.detail})
                continue
            figures = self._read_pairs([(product, location) for location in locations])
            answers.extend(
                {
                    "sku": sku, "product_id": product.id, "location_id": location.id,
                    "location": location.complete_name, "status": "ok",
                    "availability": figures[(product.id, location.id)],
                }
                for location in locations
            )
        return answers

    @api.model
    def _locations(self, refs):
        """Synced locations named by ``refs`` (default: all roots) + error answers."""
        if not refs:
            companies = set(self.env.user.company_ids.ids)
            ids = [
                loc_id
                for loc_id, _path, company in self.env["stock.sync.config"]._synced_roots()
                if not company or company in companies
            ]
            return self.env["stock.location"].browse(ids), []
        locations, errors = self.env["stock.location"], []
        for ref in refs:
            try:
                locations |= self.env["stock.sync.applier"]._resolve_location(ref)
            except LineRejected as rejected:
                errors.append({"location": ref, "status": rejected.status, "detail": rejected.detail})
        return locations, errors
