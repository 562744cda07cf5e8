"""Issue 9.2: idempotency keys are unambiguous. Two distinct order lines never share a key, whatever
their ids contain (``:`` above all); ordinary ids keep the key they always had."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from erp_bridge.domain import AvailabilityChanged, Decrement, Increment

part = st.text(alphabet=st.sampled_from(list("a:%@3")), min_size=1, max_size=4)
line = st.tuples(part, part, part)


@st.composite
def regrouped(draw):
    """Two ways of cutting the same words into (channel, order, line): the shape that collides
    when ids are joined with ':' unescaped."""
    words = draw(st.lists(st.text(alphabet="a%@3", min_size=1, max_size=3), min_size=3, max_size=6))
    cuts = st.lists(st.integers(1, len(words) - 1), min_size=2, max_size=2, unique=True).map(sorted)
    a, b = draw(cuts), draw(cuts)

    def group(cut):
        return (":".join(words[:cut[0]]), ":".join(words[cut[0]:cut[1]]), ":".join(words[cut[1]:]))
    return group(a), group(b)


def sale(channel, order, line_id, cls=Decrement, **kw):
    return cls(channel=channel, order=order, line=line_id, item="SKU", location="L", quantity=Decimal(1), **kw)


def test_ordinary_ids_keep_their_key():
    assert sale("shopify", "4501", "1301").idempotency_key == "shopify:4501:1301"
    assert sale("shopify", "4501", "refund-line-9", Increment, reason="return").idempotency_key == \
        "shopify:4501:refund-line-9:return"


def test_ids_with_colons_do_not_collide():
    """The case that dropped a real line: order 'a:b' line 'c' vs order 'a' line 'b:c'."""
    assert sale("pos", "a:b", "c").idempotency_key != sale("pos", "a", "b:c").idempotency_key


@settings(max_examples=500, deadline=None)
@given(line, line)
def test_distinct_lines_have_distinct_keys(first, second):
    lines = [first] if first == second else [first, second]
    keys = [sale(*t).idempotency_key for t in lines]
    restocks = [sale(*t, cls=Increment, reason=r).idempotency_key for t in lines for r in ("cancel", "return")]
    assert len(set(keys + restocks)) == len(keys) + len(restocks)


@settings(max_examples=300, deadline=None)
@given(regrouped())
def test_regrouped_ids_do_not_collide(pair):
    first, second = pair
    assert (sale(*first).idempotency_key == sale(*second).idempotency_key) == (first == second)


@settings(max_examples=200, deadline=None)
@given(part, part, part, part)
def test_availability_keys_of_distinct_item_locations_differ(item1, loc1, item2, loc2):
    a = AvailabilityChanged(system="odoo", item=item1, location=loc1, sequence=1)
    b = AvailabilityChanged(system="odoo", item=item2, location=loc2, sequence=1)
    assert (a.idempotency_key == b.idempotency_key) == ((item1, loc1) == (item2, loc2))
