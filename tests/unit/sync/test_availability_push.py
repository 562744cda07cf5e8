"""The availability rule as the dispatcher runs it (AvailabilityPush), over an in-memory system of
record and channel: figure = policy(sum over the channel location's warehouses of (free - pending)).
The same rule over real HTTP: tests/integration/test_availability_rule.py (SAP as the SoR)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from erp_bridge.connectors.base import Capability
from erp_bridge.domain import Availability, Decrement, Delivered, Figure
from erp_bridge.errors import RejectedError, RetryableError, Throttled
from erp_bridge.queue import open_queue
from erp_bridge.queue.base import RetryPolicy
from erp_bridge.sync.availability import AvailabilityCache, AvailabilityPush, SorReader
from erp_bridge.sync.figures import FigureStore
from erp_bridge.sync.router import Router


class Odoo:
    name, capabilities = "odoo", frozenset({Capability.READ_AVAILABILITY})

    def __init__(self, free: dict | Exception):
        self.free = free

    def read_availability(self, keys):
        if isinstance(self.free, Exception):
            raise self.free
        return {k: Availability(item=k[0], location=k[1], on_hand=Decimal(q), free=Decimal(q))
                for k, q in self.free.items() if k in keys}


class Channel:
    capabilities = frozenset({Capability.PUSH_AVAILABILITY})

    def __init__(self):
        self.pushed: list[Figure] = []

    def push_availability(self, figures):
        self.pushed += figures
        return [Delivered() for _ in figures]


@pytest.fixture
def rig(mappings, tmp_path):
    queue = open_queue(f"sqlite:///{tmp_path}/q.db", RetryPolicy())

    def make(free):
        reader = SorReader(mappings, {"odoo": Odoo(free)}, AvailabilityCache(), queue)
        return AvailabilityPush(mappings, reader, FigureStore(tmp_path / "figures.db"))

    return queue, Router(mappings), make


def sales(queue, router, *quantities):
    for n, q in enumerate(quantities):
        sale = Decrement(channel="pos", order=f"o{n}", line="1", item="007", location="store-9", quantity=Decimal(q))
        queue.enqueue(router.channel_change(sale)[:1])  # the SoR entry only: pending until Odoo applies it


@pytest.mark.parametrize("channel, free, pending, expected", [
    pytest.param("pos", {("007", "WH/Stock"): "10"}, ["3"], Decimal(7), id="minus-pending-decrement"),
    pytest.param("pos", {("007", "WH/Stock"): "10"}, [], Decimal(10), id="nothing-pending"),
    pytest.param("pos", {("007", "WH/Stock"): "2"}, ["1", "4"], Decimal(0), id="never-below-zero"),
    pytest.param("pos", {("007", "WH/Stock"): "5.5"}, ["0.5"], Decimal(5), id="decimal-rounded-down"),
    pytest.param("shop", {("007", "WH/Stock"): "4", ("007", "WH2/Stock"): "6"}, [], Decimal(9), id="sum-minus-buffer"),
    pytest.param("shop", {("007", "WH/Stock"): "4"}, [], Decimal(3), id="warehouse-without-it-counts-zero"),
])
def test_the_figure_a_channel_gets(rig, channel, free, pending, expected):
    queue, router, make = rig
    sales(queue, router, *pending)
    entries = queue.enqueue(router.availability("odoo", "007", "WH/Stock", cause="t"))
    target = Channel()
    outcomes = make(free)(channel, target, [e for e in entries if e.target == channel])
    assert outcomes == [Delivered()]
    assert [f.quantity for f in target.pushed] == [expected]


def test_an_unchanged_figure_is_not_pushed_again(rig):
    queue, router, make = rig
    push, target = make({("007", "WH/Stock"): "8"}), Channel()
    for cause in ("t1", "t2"):
        entries = [e for e in queue.enqueue(router.availability("odoo", "007", "WH/Stock", cause=cause)) if e.target == "pos"]
        last = push("pos", target, entries)
    assert last == [Delivered("unchanged")] and [f.quantity for f in target.pushed] == [Decimal(8)]
    assert target.pushed[0].previous is None


@pytest.mark.parametrize("free, error", [
    pytest.param({}, RejectedError("odoo does not know item '007' at 'WH/Stock'"), id="unknown-item-dead-letters"),
    pytest.param(RetryableError("odoo down"), RetryableError("odoo down"), id="sor-down-retries"),
    pytest.param(OSError("socket"), RetryableError("reading odoo: OSError: socket"), id="sor-bug-retries"),
    # the SoR's 429 names the SoR: the dispatcher pauses it, not the channel (test_dispatcher.py)
    pytest.param(Throttled("HTTP 429 from POST x"), Throttled("reading odoo: HTTP 429 from POST x", system="odoo"),
                 id="sor-throttled-waits"),
])
def test_when_the_sor_cannot_say(rig, free, error):
    queue, router, make = rig
    entries = [e for e in queue.enqueue(router.availability("odoo", "007", "WH/Stock", cause="t")) if e.target == "pos"]
    target = Channel()
    [outcome] = make(free)("pos", target, entries)
    assert (type(outcome), str(outcome)) == (type(error), str(error)) and target.pushed == []
    assert getattr(outcome, "system", None) == getattr(error, "system", None)
