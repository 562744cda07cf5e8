"""The pull service's read order, combination rules and SKU resolution, on the real cache, reader
and SQLite queue with an in-memory system of record."""
from __future__ import annotations

from decimal import Decimal

import pytest

from erp_bridge.domain import Availability
from erp_bridge.sync.pull import INLINE_KEYS, PullService, Reading, combine, sku_for

from .harness import form, make_app, sell

KEY = ("chair-blue", "WH/Stock")


def apply_sale_in_sor(h, units: int, same_process: bool = True) -> None:
    """What a dispatcher does with a decrement: apply it in the SoR, invalidate (only a dispatcher
    in this process can: a separate `erp-bridge worker` cannot reach this cache), then ack."""
    entries = h.queue.lease("w", 10, 30, targets=["odoo"])
    h.sor.free[KEY] -= units
    if same_process:
        h.cache.invalidate(*KEY)
    h.queue.ack([e.id for e in entries], "w")


@pytest.mark.parametrize("fresh_s", [60, 0], ids=["from_cache", "live"])
def test_a_sale_applied_between_the_two_reads_is_never_reported_as_stock(tmp_path, fresh_s):
    """The window between the two reads (availability, pending sum): the sale is applied and acked
    right after the FIRST of them, whichever the service does first. Counting decrements delivered
    since the availability read started keeps the sold unit out of the answer."""
    h = make_app(tmp_path)
    h.sor.free[KEY] = Decimal(3)
    service = PullService(h.runtime.reader, h.cache)
    service.readings([KEY], 60, 1)  # warm the cache
    sell(h.queue, *KEY, 1, "order-1")
    applied = []
    for obj, name in ((h.runtime.reader, "pending"), (h.cache, "get"), (h.runtime.reader, "read")):
        original = getattr(obj, name)

        def first_read_then_sale(*args, _original=original, **kwargs):
            value = _original(*args, **kwargs)
            if not applied:
                applied.append(apply_sale_in_sor(h, 1))
            return value
        setattr(obj, name, first_read_then_sale)
    reading = service.readings([KEY], fresh_s, 1)[KEY]
    assert applied and reading.availability.free <= 2  # the truth: 3 - 1 sold


@pytest.mark.parametrize("fresh_s", [60, 0], ids=["from_cache", "live"])
def test_a_sale_applied_by_another_process_is_never_reported_as_stock(tmp_path, fresh_s):
    """A separate `erp-bridge worker` applies and acks the sale: this process's cache is not
    invalidated, yet the answer built on the cached figure must not show the sold unit."""
    h = make_app(tmp_path)
    h.sor.free[KEY] = Decimal(3)
    service = PullService(h.runtime.reader, h.cache)
    service.readings([KEY], 60, 1)  # warm the cache: free 3
    sell(h.queue, *KEY, 1, "order-1")
    apply_sale_in_sor(h, 1, same_process=False)
    assert service.readings([KEY], fresh_s, 1)[KEY].availability.free <= 2  # the truth: 2


def test_readings_now_answer_from_memory_only_and_net_like_readings(tmp_path):
    """On the event loop: the cached figure netted like ``readings`` does; None whenever an answer
    would wait (a stale key, too many keys, a queue whose reads go over the network)."""
    h = make_app(tmp_path)
    h.sor.free[KEY] = Decimal(3)
    service = PullService(h.runtime.reader, h.cache)
    assert service.readings_now([KEY], 60) is None  # nothing cached yet: a live read would wait
    service.readings([KEY], 60, 1)  # warm the cache
    sell(h.queue, *KEY, 1, "order-1")
    now = service.readings_now([KEY], 60)
    assert now is not None and now[KEY].source == "cache" and now[KEY].availability.free == 2
    assert now[KEY].availability == service.readings([KEY], 60, 1)[KEY].availability
    assert service.readings_now([KEY], 0) is None  # stale
    many = [("chair-blue", f"L{n}") for n in range(INLINE_KEYS + 1)]
    assert service.readings_now(many, 60) is None
    h.queue.quick_reads = False  # as PostgresQueue: every read a round trip
    assert service.readings_now([KEY], 60) is None


def avail(free, restock=None):
    return Availability(item="chair-blue", location="WH/Stock", on_hand=free, free=free, restock_at=restock)


@pytest.mark.parametrize("readings, source, quantity", [
    ([Reading(avail(4), "cache", 1.0), Reading(avail(2), "live")], "live", Decimal(5)),
    ([Reading(avail(4), "cache"), Reading(None, "unknown")], "cache", Decimal(3)),
    ([Reading(avail(4), "cache"), Reading(None, "unreachable")], "unreachable", None),
    ([Reading(None, "unknown"), Reading(None, "unknown")], "unknown", None),
    ([Reading(avail(-3), "live")], "live", Decimal(0)),
], ids=["sum_worst_source", "unknown_location_adds_nothing", "any_unreachable", "all_unknown", "never_negative"])
def test_combine(example_set_yahoo, readings, source, quantity):
    answer = combine(example_set_yahoo, readings)
    assert (answer.source, answer.quantity) == (source, quantity)


@pytest.mark.parametrize("code, options, sku", [
    ("CHAIR-BLUE", {}, "chair-blue"),
    ("BOND-CHAIR", {"Color": "Red"}, "007"),
    ("TSHIRT", {"Color": "Navy", "Size": "L"}, "TS-NV-L"),
    ("TSHIRT", {"Color": "Navy"}, None),
    ("TSHIRT", {}, None),
    ("chair-blue", {}, None),
], ids=["override", "override_ignores_options", "variant", "variant_needs_all_options", "variant_without_options",
        "unlisted_error_refuses"])
def test_sku_for(example_set_yahoo, code, options, sku):
    assert sku_for(example_set_yahoo, {}, code, options) == sku


def test_most_specific_variant_wins_and_a_tie_is_unknown(example_set_yahoo):
    from erp_bridge.mapping.schema import Variant
    m = example_set_yahoo.model_copy(deep=True)
    m.items.variants = [Variant(code="MUG", options={"Size": "L"}, sku="MUG-L"),
                        Variant(code="MUG", options={"Size": "L", "Color": "Red"}, sku="MUG-L-RED"),
                        Variant(code="MUG", options={"Handle": "Left"}, sku="MUG-LEFT")]
    assert sku_for(m, {}, "MUG", {"Size": "L", "Color": "Red"}) == "MUG-L-RED"
    assert sku_for(m, {}, "MUG", {"Size": "L"}) == "MUG-L"
    assert sku_for(m, {}, "MUG", {"Size": "L", "Handle": "Left"}) is None  # two one-option matches


def test_a_hung_system_of_record_does_not_pile_up_reads(tmp_path):
    h = make_app(tmp_path)
    h.sor.free[KEY] = Decimal(3)
    h.sor.hang.clear()
    service = PullService(h.runtime.reader, h.cache, threads=1, backlog=2)
    try:
        results = [service.readings([KEY], 0, 0.05)[KEY].source for _ in range(5)]
        assert results == ["unreachable"] * 5 and service._waiting == 2
    finally:
        h.sor.hang.set()
        service.close()


@pytest.fixture
def example_set_yahoo():
    from erp_bridge.mapping.loader import load_mappings

    from .harness import REPO
    return load_mappings(REPO / "mappings").systems["yahoo_store"]


def test_form_helper_matches_the_protocol():
    assert set(form("X")) == {".catalog", ".code", ".id", ".price", ".quantity"}


def test_a_read_during_an_ack_is_not_cached_so_the_next_answer_is_exact(tmp_path):
    """A read that starts after the dispatcher's pre-ack invalidation and before the ack sees the
    sale twice (applied in the SoR, still unfinished in the queue): that one answer under-reports,
    safely, but it must not be cached, or answers would keep subtracting the sale after the ack."""
    h = make_app(tmp_path)
    h.sor.free[KEY] = Decimal(3)
    service = PullService(h.runtime.reader, h.cache)
    sell(h.queue, *KEY, 1, "order-1")
    entries = h.queue.lease("w", 10, 30, targets=["odoo"])
    h.sor.free[KEY] -= 1
    h.cache.invalidate(*KEY, hold_s=30)  # the dispatcher's before_ack
    assert service.readings([KEY], 60, 1)[KEY].availability.free == 1  # 2 in the SoR, 1 unfinished
    h.queue.ack([e.id for e in entries], "w")
    assert service.readings([KEY], 60, 1)[KEY].availability.free == 2  # not the held read's 1
    h.cache.invalidate(*KEY)  # the dispatcher's after the ack: the hold ends
    assert service.readings([KEY], 60, 1)[KEY].source == "live"
    assert service.readings([KEY], 60, 1)[KEY].source == "cache"


def test_forgetting_every_key_refuses_reads_started_before_it(tmp_path):
    """What a process does when its LISTEN connection comes back (the acks it missed are lost)."""
    h = make_app(tmp_path)
    h.sor.free[KEY] = Decimal(3)
    service = PullService(h.runtime.reader, h.cache)
    assert service.readings([KEY], 60, 1)[KEY].source == "live"
    assert service.readings([KEY], 60, 1)[KEY].source == "cache"
    started = h.cache.clock()
    h.cache.forget(None)
    assert h.cache.get(*KEY) is None
    figure = Availability(item=KEY[0], location=KEY[1], on_hand=Decimal(3), free=Decimal(3))
    assert not h.cache.put(figure, read_started=started)  # read before the invalidation: not cached
    assert h.cache.put(figure, read_started=h.cache.clock() + 0.001)


def test_another_process_s_ack_forgets_a_key_but_leaves_this_process_s_hold(tmp_path):
    """The notification of another process's ack must not end the hold this process's own
    dispatcher set before its ack: a read in that window would be cached counting the sale twice."""
    h = make_app(tmp_path)
    h.sor.free[KEY] = Decimal(3)
    service = PullService(h.runtime.reader, h.cache)
    assert service.readings([KEY], 60, 1)[KEY].source == "live"
    h.cache.invalidate(*KEY, hold_s=30)  # this process's dispatcher, before its ack
    h.cache.forget([KEY])  # another process's ack of the same key (say, to a mirror)
    assert h.cache.get(*KEY) is None
    assert service.readings([KEY], 60, 1)[KEY].source == "live"
    assert service.readings([KEY], 60, 1)[KEY].source == "live"  # still held: nothing cached
    h.cache.invalidate(*KEY)  # this process's own ack: the hold ends
    assert service.readings([KEY], 60, 1)[KEY].source == "live"
    assert service.readings([KEY], 60, 1)[KEY].source == "cache"
