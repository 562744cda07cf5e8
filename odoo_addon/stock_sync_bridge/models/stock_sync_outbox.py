# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Writes the transactional outbox: availability markers and the move journal.

Everything here runs inside the transaction that changed the stock, so an event exists
if and only if the change committed. Rows never carry computed absolute quantities: the
bridge reads availability after commit (DESIGN.md, flow 1).
"""

import logging
import threading
from contextlib import contextmanager
from functools import partial

import requests

from odoo import api, models

from .concurrency import execute_contended

_logger = logging.getLogger(__name__)

NUDGE_TIMEOUT = 0.5  # seconds; the bridge polls anyway, so never wait on it
ORIGIN_KEY = "stock_sync_origin"  # context key the bridge API sets ('bridge:<channel>')
DEFER_KEY = "stock_sync_deferred_markers"  # in cr.cache: lives as long as the cursor
WEAK_ORIGIN = "odoo"  # the quant hook's fallback; a move's own origin beats it


def _send_nudge(url, secret, dbname):
    """POST {url}/odoo/nudge; failures only delay the event until the next poll."""
    try:
        requests.post(
            url.rstrip("/") + "/odoo/nudge",
            json={"db": dbname},
            headers={"Authorization": "Bearer %s" % secret},
            timeout=NUDGE_TIMEOUT,
        )
    except Exception as exc:  # pylint: disable=broad-except
        # the secret is in the headers only; the URL and the class name are safe to log
        _logger.debug("stock sync nudge to %s failed: %s", url, type(exc).__name__)


def _nudge_in_thread(url, secret, dbname):
    threading.Thread(
        target=_send_nudge, args=(url, secret, dbname), daemon=True
    ).start()


class StockSyncOutbox(models.AbstractModel):
    _name = "stock.sync.outbox"
    _description = "Stock Sync Outbox Writer"

    @api.model
    def _context_origin(self):
        return self.env.context.get(ORIGIN_KEY)

    @api.model
    def _origin_of_move(self, move):
        """Why the stock changed: the bridge, else the order or document."""
        if self._context_origin():
            return self._context_origin()
        if move.origin:
            return move.origin
        return "inventory" if move.is_inventory else (move.reference or "odoo")

    @api.model
    def _mark(self, triples):
        """Upsert one pending marker per (product, synced root) for each triple.

        ``triples``: iterable of (product, location, origin). The database coalesces:
        the partial unique index on pending rows plus ON CONFLICT bumps the sequence of
        the existing pending row instead of adding one.
        """
        config = self.env["stock.sync.config"]
        deferred = self.env.cr.cache.get(DEFER_KEY)
        rows = {} if deferred is None else deferred
        for product, location, origin in triples:
            if not config._is_synced_product(product):
                continue
            origin = (origin or WEAK_ORIGIN)[:128]
            for root_id in config._roots_of(location):
                if origin != WEAK_ORIGIN or (product.id, root_id) not in rows:
                    rows[(product.id, root_id)] = origin
        if rows and deferred is None:
            self._upsert_markers(rows)
            self._nudge_after_commit()

    @api.model
    @contextmanager
    def _deferred(self):
        """Collect the markers of one business operation and upsert them once at its end.

        Confirming an order changes the same (product, location) several times
        (confirm, reserve, quant); one upsert is enough because no other transaction
        can read this one's changes before it commits. Marking more than needed is
        harmless, so a savepoint rolled back inside the operation costs nothing; if
        the operation raises, nothing is written (its transaction is rolled back).
        """
        cache = self.env.cr.cache
        if DEFER_KEY in cache:  # nested: the outermost operation writes
            yield
            return
        cache[DEFER_KEY] = {}
        try:
            yield
        finally:
            rows = cache.pop(DEFER_KEY)
        if rows:
            self._upsert_markers(rows)
            self._nudge_after_commit()

    @api.model
    def _upsert_markers(self, rows):
        config = self.env["stock.sync.config"]
        values = [
            (product_id, root_id, config._root_company(root_id), origin, self.env.uid)
            for (product_id, root_id), origin in sorted(rows.items())
        ]
        # pending ORM writes (e.g. a state change) must reach the table before the SQL
        self.env["stock.sync.marker"].flush_model()
        placeholders = ",".join(["(%s, %s, %s, %s, 'pending', %s)"] * len(values))
        params = [item for row in values for item in row]
        # one statement for the batch; sorted keys keep lock order stable (no deadlock)
        execute_contended(
            self.env.cr,
            """
            INSERT INTO stock_sync_marker AS m
                   (product_id, location_id, company_id, origin, state, create_uid,
                    sequence, create_date, write_uid, write_date)
            SELECT v.p::int, v.l::int, v.c::int, v.o::varchar, v.s::varchar, v.u::int,
                   nextval('stock_sync_event_seq'), now() at time zone 'UTC', v.u::int,
                   now() at time zone 'UTC'
              FROM (VALUES %s) AS v(p, l, c, o, s, u)
            ON CONFLICT (product_id, location_id) WHERE state = 'pending'
            DO UPDATE SET sequence = nextval('stock_sync_event_seq'),
                          origin = EXCLUDED.origin,
                          write_uid = EXCLUDED.write_uid,
                          write_date = EXCLUDED.write_date
            """
            % placeholders,
            params,
        )
        # rows changed behind the ORM's back
        self.env["stock.sync.marker"].invalidate_model()

    @api.model
    def _mark_moves(self, moves):
        """Markers for both ends of each move (forecast and quants change on both)."""
        triples = []
        for move in moves:
            origin = self._origin_of_move(move)
            triples.append((move.product_id, move.location_id, origin))
            triples.append((move.product_id, move.location_dest_id, origin))
        self._mark(triples)

    @api.model
    def _journal_moves(self, moves):
        """One journal row per done move into or out of a synced location."""
        config = self.env["stock.sync.config"]
        rows = []
        for move in moves:
            if move.state != "done" or not config._is_synced_product(move.product_id):
                continue
            roots = config._roots_of(move.location_id) + config._roots_of(
                move.location_dest_id
            )
            if roots:
                rows.append(self._journal_values(move, roots[0]))
        if rows:
            self._insert_journal(rows)
            self._nudge_after_commit()

    @api.model
    def _journal_values(self, move, root_id):
        product = move.product_id
        # quantity in the product's UoM: mirrors book stock in the base unit
        qty = move.product_uom._compute_quantity(
            move.quantity, product.uom_id, rounding_method="HALF-UP"
        )
        company_id = move.company_id.id or self.env["stock.sync.config"]._root_company(
            root_id
        )
        return (
            move.id, product.id, qty, product.uom_id.id, move.location_id.id,
            move.location_dest_id.id, root_id, company_id,
            self._origin_of_move(move)[:128], move.reference or "", self.env.uid,
        )

    @api.model
    def _insert_journal(self, rows):
        self.env["stock.sync.journal"].flush_model()
        placeholders = ",".join(["(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"] * len(rows))
        params = [item for row in rows for item in row]
        # ON CONFLICT: the move id is the idempotency key; a move is journaled once
        self.env.cr.execute(
            """
            INSERT INTO stock_sync_journal
                   (move_id, product_id, quantity, uom_id, location_id, location_dest_id,
                    synced_location_id, company_id, origin, reference, create_uid,
                    state, sequence, date, create_date, write_uid, write_date)
            SELECT v.m::int, v.p::int, v.q::float8, v.uom::int, v.l::int, v.ld::int,
                   v.sl::int, v.c::int, v.o::varchar, v.r::varchar, v.u::int,
                   'pending', nextval('stock_sync_event_seq'),
                   now() at time zone 'UTC', now() at time zone 'UTC', v.u::int,
                   now() at time zone 'UTC'
              FROM (VALUES %s) AS v(m, p, q, uom, l, ld, sl, c, o, r, u)
            ON CONFLICT (move_id) DO NOTHING
            """
            % placeholders,
            params,
        )
        self.env["stock.sync.journal"].invalidate_model()

    @api.model
    def _nudge_after_commit(self):
        """Register (once per transaction) a post-commit nudge to the bridge."""
        postcommit = self.env.cr.postcommit
        if postcommit.data.get("stock_sync_nudge"):
            return
        postcommit.data["stock_sync_nudge"] = True
        config = self.env["stock.sync.config"]
        url = config._param("bridge_url")
        if url:
            postcommit.add(
                partial(
                    _nudge_in_thread, url, config._param("shared_secret") or "",
                    self.env.cr.dbname,
                )
            )
