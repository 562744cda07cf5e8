# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Applies channel decrements/increments to Odoo stock, exactly once per key."""

from psycopg2 import errors as pg_errors

from odoo import Command, api, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import float_compare

from . import compat
from .concurrency import execute_contended
from .compat import storable_domain
from .stock_sync_outbox import ORIGIN_KEY

KINDS = ("decrement", "increment")


class LineRejected(Exception):
    """A line that must leave no trace: its savepoint is rolled back."""

    def __init__(self, status, detail):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class StockSyncApplier(models.AbstractModel):
    _name = "stock.sync.applier"
    _description = "Stock Sync Channel Change Applier"

    @api.model
    def _apply_batch(self, lines):
        self._lock_products(lines)
        return [self._apply_in_savepoint(line) for line in lines]

    @api.model
    def _lock_products(self, lines):
        """Serialise stock checks per product across concurrent batches.

        Odoo runs in REPEATABLE READ: a plain row lock would still let the second
        transaction check free stock in its older snapshot. A no-op UPDATE makes the
        second one fail with a serialization error instead; Odoo's RPC layer then
        retries it with a fresh snapshot that sees the first one's reservations.
        Sorted ids keep the lock order stable across batches (no deadlock).
        """
        skus = sorted({str(line.get("sku")) for line in lines if isinstance(line, dict)})
        if not skus:
            return
        execute_contended(
            self.env.cr,
            """
            UPDATE product_product SET write_date = write_date
             WHERE id IN (SELECT id FROM product_product
                           WHERE default_code IN %s ORDER BY id FOR NO KEY UPDATE)
            """,
            (tuple(skus),),
        )

    @api.model
    def _apply_in_savepoint(self, line):
        key = line.get("key") if isinstance(line, dict) else None
        try:
            with self.env.cr.savepoint(), self.env["stock.sync.outbox"]._deferred():
                return self._apply_line(line)
        except LineRejected as rejected:
            self.env.invalidate_all()  # the savepoint rolled back rows the cache holds
            return {"key": key, "status": rejected.status, "detail": rejected.detail}
        except pg_errors.UniqueViolation:
            # a concurrent transaction committed the same key first
            self.env.invalidate_all()
            return {"key": key, "status": "duplicate", "detail": "already applied"}
        except (UserError, ValidationError) as error:
            self.env.invalidate_all()
            return {"key": key, "status": "error", "detail": str(error)}

    @api.model
    def _apply_line(self, line):
        line = self._validate(line)
        if self._known_key(line["key"]):
            raise LineRejected("duplicate", "already applied")
        product = self._resolve_product(line["sku"])
        location = self._resolve_location(line["location"])
        applied = self.env["stock.sync.applied"]._claim(line, product, location)
        if not applied:
            raise LineRejected("duplicate", "already applied")
        origin = "bridge:%s" % (line.get("channel") or "unknown")
        self_ = self.with_context(**{ORIGIN_KEY: origin})
        if line["kind"] == "decrement":
            moves = self_._decrement(line, product, location)
        else:
            moves = self_._increment(line, product, location)
        applied.move_ids = [Command.set(moves.ids)]
        pickings = ", ".join(moves.picking_id.mapped("name"))
        return {"key": line["key"], "status": "applied", "detail": pickings}

    @api.model
    def _validate(self, line):
        if not isinstance(line, dict):
            raise LineRejected("invalid", "line must be an object")
        missing = [k for k in ("key", "kind", "sku", "location", "quantity") if not line.get(k)]
        if missing:
            raise LineRejected("invalid", "missing field(s): %s" % ", ".join(missing))
        if line["kind"] not in KINDS:
            raise LineRejected("invalid", "kind must be one of %s" % ", ".join(KINDS))
        try:
            quantity = float(line["quantity"])
        except (TypeError, ValueError):
            raise LineRejected("invalid", "quantity is not a number") from None
        if quantity <= 0:
            raise LineRejected("invalid", "quantity must be positive")
        return dict(line, key=str(line["key"])[:256], sku=str(line["sku"]), quantity=quantity)

    @api.model
    def _known_key(self, key):
        self.env.cr.execute("SELECT 1 FROM stock_sync_applied WHERE key = %s", (key,))
        return bool(self.env.cr.fetchone())

    @api.model
    def _resolve_product(self, sku):
        products = self.env["product.product"].search(
            [("default_code", "=", sku)] + storable_domain(), limit=2
        )
        if not products:
            raise LineRejected("unknown_product", "no storable product with SKU %r" % sku)
        if len(products) > 1:
            raise LineRejected("unknown_product", "SKU %r is ambiguous" % sku)
        if not self.env["stock.sync.config"]._is_synced_product(products):
            raise LineRejected("unknown_product", "SKU %r is not synced" % sku)
        return products

    @api.model
    def _resolve_location(self, ref):
        """A location id, its full name ('WH/Stock') or a warehouse code ('WH')."""
        location = self._find_location(ref)
        # sudo bypasses record rules: keep the caller inside its own companies
        if location and location.company_id not in self.env.user.company_ids:
            location = None
        if not location or not self.env["stock.sync.config"]._roots_of(location):
            raise LineRejected("unknown_location", "no synced location %r" % (ref,))
        return location

    @api.model
    def _find_location(self, ref):
        Location = self.env["stock.location"]
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return Location.browse(int(ref)).exists()
        # a warehouse code first: the warehouse's view location has the same name
        warehouse = self.env["stock.warehouse"].search([("code", "=", ref)], limit=1)
        if warehouse:
            return warehouse.lot_stock_id
        return Location.search(
            [("complete_name", "=", ref), ("usage", "=", "internal")], limit=1
        )

    @api.model
    def _decrement(self, line, product, location):
        config = self.env["stock.sync.config"]
        if not config._allow_backorders():
            free = self.env["stock.sync.availability"]._free_qty(product, location)
            rounding = product.uom_id.rounding
            if float_compare(line["quantity"], free, precision_rounding=rounding) > 0:
                raise LineRejected(
                    "insufficient_stock",
                    "requested %s, free %s %s" % (line["quantity"], free, product.uom_id.name),
                )
        customers = self.env.ref("stock.stock_location_customers")
        picking = self._create_picking(line, product, location, customers, "outgoing")
        # reserve whatever the picking type's reservation method says (see USAGE.md)
        picking.move_ids._action_assign()
        if config._decrement_done():
            self._validate_moves(picking.move_ids)
        return picking.move_ids

    @api.model
    def _increment(self, line, product, location):
        """Release open channel reservations of the same order first, then receive."""
        remaining, moves = self._release_reservations(line, product, location)
        if float_compare(remaining, 0, precision_rounding=product.uom_id.rounding) > 0:
            customers = self.env.ref("stock.stock_location_customers")
            picking = self._create_picking(
                dict(line, quantity=remaining), product, customers, location, "incoming"
            )
            self._validate_moves(picking.move_ids)
            moves |= picking.move_ids
        return moves

    @api.model
    def _release_reservations(self, line, product, location):
        open_moves = self.env["stock.sync.applied"].search(
            [
                ("kind", "=", "decrement"),
                ("channel", "=", line.get("channel")),
                ("order_ref", "=", line.get("order_ref")),
                ("product_id", "=", product.id),
                ("location_id", "=", location.id),
            ],
            order="id",
        ).move_ids.filtered(lambda m: m.state not in ("done", "cancel"))
        remaining = line["quantity"]
        released = self.env["stock.move"]
        for move in open_moves:
            if remaining <= 0:
                break
            take = min(remaining, move.product_qty)
            self._reduce_move(move, take)
            released |= move
            remaining -= take
        return remaining, released

    @api.model
    def _reduce_move(self, move, quantity):
        if float_compare(quantity, move.product_qty, precision_rounding=move.product_uom.rounding) >= 0:
            move._action_cancel()
            return
        move._do_unreserve()
        move.product_uom_qty = move.product_uom_qty - quantity
        move._action_assign()

    @api.model
    def _create_picking(self, line, product, source, dest, code):
        internal = source if code == "outgoing" else dest
        picking_type = self._picking_type(internal, code)
        origin = "%s:%s" % (line.get("channel") or "", line.get("order_ref") or "")
        picking = self.env["stock.picking"].create(
            {
                "picking_type_id": picking_type.id,
                "location_id": source.id,
                "location_dest_id": dest.id,
                "origin": origin,
                "company_id": internal.company_id.id,
                "move_ids": [
                    Command.create(compat.move_values(
                        "%s %s" % (line["key"], product.display_name),
                        {
                            "product_id": product.id,
                            "product_uom_qty": line["quantity"],
                            "product_uom": product.uom_id.id,
                            "origin": origin,
                            "location_id": source.id,
                            "location_dest_id": dest.id,
                        },
                    ))
                ],
            }
        )
        picking.action_confirm()
        return picking

    @api.model
    def _picking_type(self, location, code):
        warehouse = location.warehouse_id
        picking_type = warehouse.out_type_id if code == "outgoing" else warehouse.in_type_id
        if picking_type:
            return picking_type
        picking_type = self.env["stock.picking.type"].search(
            [("code", "=", code), ("company_id", "=", location.company_id.id)], limit=1
        )
        if not picking_type:
            raise LineRejected("error", "no %s operation type for %s" % (code, location.complete_name))
        return picking_type

    @api.model
    def _validate_moves(self, moves):
        """Validate through stock moves (never quants): valuation and traceability hold."""
        for move in moves:
            move.quantity = move.product_uom_qty
        moves.picked = True
        moves._action_done()
        moves.picking_id.date_done = moves[:1].date
