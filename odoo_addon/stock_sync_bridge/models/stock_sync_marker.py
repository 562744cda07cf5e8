# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models

EVENT_STATES = [("pending", "Pending"), ("done", "Done")]


class StockSyncMarker(models.Model):
    """'The availability of (product, location) changed': no quantity, read it now.

    At most one pending row per (product, location), enforced by a partial unique
    index; writers upsert (stock.sync.outbox) and bump ``sequence`` so an
    acknowledgement of an older read can be told apart (compare-and-set).
    """

    _name = "stock.sync.marker"
    _inherit = ["stock.sync.event"]
    _sync_kind = "marker"
    _description = "Stock Sync Availability Marker"
    _order = "id desc"

    product_id = fields.Many2one(
        "product.product", required=True, index=True, ondelete="cascade"
    )
    sku = fields.Char(related="product_id.default_code", string="SKU")
    location_id = fields.Many2one(
        "stock.location", required=True, ondelete="cascade",
        help="The synced location; its availability includes its children.",
    )
    company_id = fields.Many2one("res.company", index=True)
    origin = fields.Char(
        help="What caused the change: an order, a document, or 'bridge:<channel>' "
        "when the bridge applied it (the bridge does not echo those back).",
    )
    state = fields.Selection(EVENT_STATES, required=True, default="pending", index=True)
    sequence = fields.Integer(
        readonly=True, help="Bumped at every change; acknowledgements must quote it."
    )
    done_date = fields.Datetime(readonly=True)
    delivery_ids = fields.One2many("stock.sync.delivery", "marker_id", "Deliveries")

    def init(self):
        cr = self.env.cr
        cr.execute("CREATE SEQUENCE IF NOT EXISTS stock_sync_event_seq")
        # the coalescing rule lives in the database, not in a search-then-create
        cr.execute(
            """
            CREATE UNIQUE INDEX IF NOT EXISTS stock_sync_marker_pending_uniq
                ON stock_sync_marker (product_id, location_id)
             WHERE state = 'pending'
            """
        )

    def action_resync(self):
        """Ask the bridge to push these again (a new pending marker per row)."""
        self.env["stock.sync.outbox"]._mark(
            (marker.product_id, marker.location_id, "resync") for marker in self
        )

    @api.autovacuum
    def _gc_done_markers(self):
        # done markers are only history; keep a month for the UI
        self.env.cr.execute(
            "DELETE FROM stock_sync_marker WHERE state = 'done' AND done_date < "
            "(now() at time zone 'UTC') - interval '30 days'"
        )
