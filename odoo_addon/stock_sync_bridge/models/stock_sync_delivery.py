# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models

from . import compat

DELIVERY_STATES = [("pending", "Pending"), ("done", "Done"), ("dead", "Dead")]
# what the bridge may report -> stored state ('failed' = will retry, keep pending)
ACK_STATES = {"done": "done", "dead": "dead", "failed": "pending"}


class StockSyncDelivery(models.Model):
    """The result of one event (marker or journal row) at one target."""

    _name = "stock.sync.delivery"
    _description = "Stock Sync Delivery"
    _order = "write_date desc, id desc"

    marker_id = fields.Many2one("stock.sync.marker", ondelete="cascade", index=True)
    journal_id = fields.Many2one("stock.sync.journal", ondelete="cascade", index=True)
    event_type = fields.Selection(
        [("marker", "Availability"), ("journal", "Move journal")],
        compute="_compute_event_type", store=True,
    )
    product_id = fields.Many2one(
        "product.product", compute="_compute_event_type", store=True
    )
    origin = fields.Char(compute="_compute_event_type", store=True)
    company_id = fields.Many2one(
        "res.company", compute="_compute_event_type", store=True, index=True
    )
    target = fields.Char(required=True, index=True)
    state = fields.Selection(DELIVERY_STATES, required=True, default="pending")
    sequence = fields.Integer(help="Event sequence this result refers to.")
    attempts = fields.Integer(default=0)
    last_error = fields.Text()

    compat.sql_constraints(locals(), [
        ("marker_target_uniq", "unique(marker_id, target)", "One result per target."),
        ("journal_target_uniq", "unique(journal_id, target)", "One result per target."),
        (
            "one_event",
            "CHECK((marker_id IS NULL) <> (journal_id IS NULL))",
            "A delivery belongs to exactly one marker or one journal row.",
        ),
    ])

    @api.depends("marker_id", "journal_id")
    def _compute_event_type(self):
        for rec in self:
            event = rec.marker_id or rec.journal_id
            rec.event_type = "marker" if rec.marker_id else "journal"
            rec.product_id = event.product_id
            rec.origin = event.origin
            rec.company_id = event.company_id

    def _record(self, event, target, ack_state, error, sequence):
        """Store one target's result; a repeated ack just counts another attempt."""
        column = "marker_id" if event._name == "stock.sync.marker" else "journal_id"
        existing = self.search([(column, "=", event.id), ("target", "=", target)])
        vals = {
            "state": ACK_STATES[ack_state],
            "sequence": sequence,
            "last_error": (error or False) if ack_state != "done" else False,
        }
        if existing and existing.sequence > sequence:
            # a late ack of an older read must not overwrite a newer result
            existing.attempts += 1
            return existing
        if existing:
            vals["attempts"] = existing.attempts + 1
            existing.write(vals)
            return existing
        vals.update({column: event.id, "target": target, "attempts": 1})
        return self.create(vals)

    def _all_final(self, event, sequence, targets):
        """Have all ``targets`` (or, with none configured, any) finished ``sequence``?"""
        column = "marker_id" if event._name == "stock.sync.marker" else "journal_id"
        finished = set(
            self.search(
                [
                    (column, "=", event.id),
                    ("sequence", "=", sequence),
                    ("state", "in", ("done", "dead")),
                ]
            ).mapped("target")
        )
        if targets:
            return set(targets) <= finished
        return bool(finished)

    def action_retry(self):
        """Send dead (or stuck) results again: the event goes back to pending."""
        to_retry = self.filtered(lambda d: d.state != "done")
        to_retry.write({"state": "pending"})
        markers = to_retry.marker_id
        # a marker is re-raised through the outbox so the unique pending row holds
        self.env["stock.sync.outbox"]._mark(
            (m.product_id, m.location_id, "retry") for m in markers
        )
        to_retry.journal_id.filtered(lambda j: j.state == "done").write(
            {"state": "pending", "done_date": False}
        )
        return True
