# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import models
from odoo.tools import SQL

from .concurrency import execute_contended


class StockSyncEvent(models.AbstractModel):
    """What availability markers and journal rows share: an event is done once every target
    configured for its kind has a final result for its current sequence."""

    _name = "stock.sync.event"
    _description = "Stock Sync Outbox Event"
    #: "marker" or "journal": whose configured targets must acknowledge
    _sync_kind = None

    def _complete_if_acked(self, sequence):
        """Compare-and-set: done only if still at ``sequence`` and every target acked."""
        self.ensure_one()
        self.env["stock.sync.delivery"].flush_model()
        targets = self.env["stock.sync.config"]._targets(self._sync_kind)
        if not self.env["stock.sync.delivery"]._all_final(self, sequence, targets):
            return False
        # contended by a concurrent marker bump of the same row: Odoo retries the ack quietly
        execute_contended(self.env.cr, SQL(
            """
            UPDATE %s
               SET state = 'done', done_date = now() at time zone 'UTC',
                   write_date = now() at time zone 'UTC', write_uid = %s
             WHERE id = %s AND sequence = %s AND state = 'pending'
            """,
            SQL.identifier(self._table), self.env.uid, self.id, sequence,
        ))
        self.invalidate_recordset()
        return bool(self.env.cr.rowcount)
