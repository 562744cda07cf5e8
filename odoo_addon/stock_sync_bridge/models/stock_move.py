# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import models


class StockMove(models.Model):
    """Stock moves raise markers with their own origin (the order or document).

    The quant hook already marks every quant change; marking again here, after the
    operation, stamps the marker with the move's origin and also covers changes of
    the forecast alone (confirmation and cancellation move no quant).
    """

    _inherit = "stock.move"

    def _stock_sync_mark(self):
        # no exists(): none of the hooked operations deletes the moves it is called on
        self.env["stock.sync.outbox"].sudo()._mark_moves(self)

    # *args/**kwargs: the signatures differ between 17, 18 and 19 (19 adds create_proc)
    def _action_confirm(self, *args, **kwargs):
        moves = super()._action_confirm(*args, **kwargs)
        moves._stock_sync_mark()
        return moves

    def _action_assign(self, *args, **kwargs):
        res = super()._action_assign(*args, **kwargs)
        self._stock_sync_mark()
        return res

    def _do_unreserve(self):
        res = super()._do_unreserve()
        self._stock_sync_mark()
        return res

    def _action_cancel(self):
        res = super()._action_cancel()
        self._stock_sync_mark()
        return res

    def _action_done(self, *args, **kwargs):
        moves = super()._action_done(*args, **kwargs)
        # journal first: a mirror needs the move itself, channels only the marker
        self.env["stock.sync.outbox"].sudo()._journal_moves(moves)
        moves._stock_sync_mark()
        return moves
