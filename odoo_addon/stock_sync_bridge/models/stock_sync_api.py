# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The bridge's API: public methods, called over JSON-RPC (odoorpc).

Every method first checks the caller (group 'Stock Sync Bridge' or Stock manager),
then works as superuser restricted to the caller's companies, so the integration
user needs no other right. Shapes are documented in docs/odoo-module.md.
"""

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError

from .stock_sync_delivery import ACK_STATES
from .stock_sync_drift import MAX_ROWS as MAX_DRIFT_ROWS

MAX_LIMIT = 5000


class StockSyncApi(models.AbstractModel):
    _name = "stock.sync.api"
    _description = "Stock Sync Bridge API"

    @api.model
    def _bridge_env(self):
        """Check the caller, then return a sudo model bound to the caller's companies."""
        user = self.env.user
        if not (
            user.has_group("stock_sync_bridge.group_bridge")
            or user.has_group("stock.group_stock_manager")
        ):
            raise AccessError(_("Only the stock sync bridge user may call this API."))
        return self.sudo().with_context(allowed_company_ids=user.company_ids.ids)

    @api.model
    def _company_domain(self):
        return [("company_id", "in", [False] + self.env.user.company_ids.ids)]

    @api.model
    def _limit(self, limit):
        return max(1, min(int(limit or 500), MAX_LIMIT))

    # -- availability markers -------------------------------------------------

    @api.model
    def fetch_markers(self, limit=500):
        """Pending markers, oldest first, each with availability read now."""
        api_ = self._bridge_env()
        markers = api_.env["stock.sync.marker"].search(
            [("state", "=", "pending")] + self._company_domain(),
            order="id", limit=self._limit(limit),
        )
        figures = api_.env["stock.sync.availability"]._read_pairs(
            [(m.product_id, m.location_id) for m in markers]
        )
        return [api_._marker_dict(m, figures) for m in markers]

    @api.model
    def _marker_dict(self, marker, figures):
        return {
            "id": marker.id,
            "sequence": marker.sequence,
            "product_id": marker.product_id.id,
            "sku": marker.product_id.default_code or "",
            "location_id": marker.location_id.id,
            "location": marker.location_id.complete_name,
            "warehouse": marker.location_id.warehouse_id.code or "",
            "company_id": marker.company_id.id,
            "origin": marker.origin or "",
            "changed_at": marker.write_date.isoformat(),
            "availability": figures[(marker.product_id.id, marker.location_id.id)],
        }

    @api.model
    def ack_markers(self, results):
        """Record per-target results; see _ack for the per-result answer."""
        api_ = self._bridge_env()
        return [api_._ack("stock.sync.marker", result) for result in results or []]

    # -- move journal ---------------------------------------------------------

    @api.model
    def fetch_journal(self, limit=500):
        """Pending journal rows (done moves), oldest first; never coalesced."""
        api_ = self._bridge_env()
        rows = api_.env["stock.sync.journal"].search(
            [("state", "=", "pending")] + self._company_domain(),
            order="id", limit=self._limit(limit),
        )
        return [api_._journal_dict(row) for row in rows]

    @api.model
    def _journal_dict(self, row):
        return {
            "id": row.id,
            "sequence": row.sequence,
            "move_id": row.move_id.id,
            "idempotency_key": "odoo-move-%s" % row.move_id.id,
            "product_id": row.product_id.id,
            "sku": row.product_id.default_code or "",
            "quantity": row.quantity,
            "uom": row.uom_id.name,
            "location_id": row.location_id.id,
            "location": row.location_id.complete_name,
            "location_dest_id": row.location_dest_id.id,
            "location_dest": row.location_dest_id.complete_name,
            "synced_location_id": row.synced_location_id.id,
            "synced_location": row.synced_location_id.complete_name,
            "direction": self._direction(row),
            "company_id": row.company_id.id,
            "origin": row.origin or "",
            "reference": row.reference or "",
            "date": row.date.isoformat(),
        }

    @api.model
    def _direction(self, row):
        synced = row.synced_location_id.parent_path
        out = (row.location_id.parent_path or "").startswith(synced)
        into = (row.location_dest_id.parent_path or "").startswith(synced)
        if out and into:
            return "internal"
        return "out" if out else "in"

    @api.model
    def ack_journal(self, results):
        api_ = self._bridge_env()
        return [api_._ack("stock.sync.journal", result) for result in results or []]

    # -- acknowledgements -----------------------------------------------------

    @api.model
    def _ack(self, model, result):
        """One result -> {id, target, status}.

        status: 'done' (the event is complete), 'recorded' (stored; other targets
        still due, or state 'failed'), 'stale' (the marker changed since that read:
        it stays pending), 'unknown' (no such event), 'invalid' (bad input).
        """
        error = self._ack_error(result)
        if error:
            return {"id": (result or {}).get("id"), "target": None, "status": "invalid",
                    "detail": error}
        event = self.env[model].search(
            [("id", "=", int(result["id"]))] + self._company_domain()
        )
        answer = {"id": result["id"], "target": result["target"]}
        if not event:
            return dict(answer, status="unknown")
        sequence = int(result["sequence"])
        self.env["stock.sync.delivery"]._record(
            event, result["target"], result["state"], result.get("error"), sequence
        )
        if sequence != event.sequence:
            return dict(answer, status="stale")
        if event.state == "done" or event._complete_if_acked(sequence):
            return dict(answer, status="done")
        return dict(answer, status="recorded")

    @api.model
    def _ack_error(self, result):
        if not isinstance(result, dict):
            return "result must be an object"
        missing = [k for k in ("id", "sequence", "target", "state") if result.get(k) in (None, "")]
        if missing:
            return "missing field(s): %s" % ", ".join(missing)
        if result["state"] not in ACK_STATES:
            return "state must be one of %s" % ", ".join(sorted(ACK_STATES))
        if result["state"] == "dead" and not result.get("error"):
            return "a dead result needs an error (the reason)"
        return None

    # -- channel changes and pull reads ---------------------------------------

    @api.model
    def apply_stock_changes(self, lines):
        """Apply channel decrements/increments once per key; one result per line."""
        api_ = self._bridge_env()
        return api_.env["stock.sync.applier"]._apply_batch(lines or [])

    @api.model
    def read_availability(self, skus, locations=None):
        """Current availability for each SKU x location (default: every synced root)."""
        api_ = self._bridge_env()
        return api_.env["stock.sync.availability"]._read_skus(skus or [], locations)

    # -- reconciliation ---------------------------------------------------------

    @api.model
    def report_drift(self, run_at, systems, rows):
        """The bridge's last reconciliation: each row a difference (system, item, location,
        shows, should, cause, fixed) of one of ``systems``, shown in Stock Sync > Reconciliation."""
        api_ = self._bridge_env()
        error = self._drift_error(run_at, systems, rows)
        if error:
            raise UserError(_("report_drift: %s") % error)
        stored = api_.env["stock.sync.drift"]._replace(fields.Datetime.to_datetime(run_at), systems, rows)
        return {"stored": len(stored)}

    @api.model
    def _drift_error(self, run_at, systems, rows):
        try:
            fields.Datetime.to_datetime(run_at)
        except (TypeError, ValueError):
            return "run_at must be a UTC date and time 'YYYY-MM-DD HH:MM:SS', not %r" % (run_at,)
        if not isinstance(systems, list) or not systems or not all(isinstance(s, str) and s for s in systems):
            return "systems must be a non-empty list of the system names the run checked"
        if not isinstance(rows, list) or len(rows) > MAX_DRIFT_ROWS:
            return "rows must be a list of at most %d differences (send more in several calls)" % MAX_DRIFT_ROWS
        for n, row in enumerate(rows):
            if not isinstance(row, dict) or row.get("system") not in systems or not row.get("item"):
                return "row %d must be an object with an item and a system among %s" % (n, ", ".join(systems))
        return None

    @api.model
    def read_settings(self):
        """The settings the bridge needs (seed 000 options); never the secret."""
        api_ = self._bridge_env()
        config = api_.env["stock.sync.config"]
        return {
            "availability_basis": config._param("availability_basis", "free"),
            "display_inventory": config._param("display_inventory", "quantity"),
            "allow_backorders": config._allow_backorders(),
            "unreachable_policy": config._param("unreachable_policy", "accept"),
            "unreachable_message": _("Availability could not be confirmed"),
            "decrement_mode": config._param("decrement_mode", "reserve"),
            "marker_targets": config._targets("marker"),
            "journal_targets": config._targets("journal"),
            "locations": [
                {"id": loc_id, "location": self.env["stock.location"].sudo().browse(loc_id).complete_name}
                for loc_id, _path, company in config._synced_roots()
                if company in [False, None] + self.env.user.company_ids.ids
            ],
        }
