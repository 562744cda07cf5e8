"""Hypothesis-generated Square notifications, correctly signed, through the connector: every one is
either taken (stored, []) or refused with a 4xx reason; nothing else escapes (the route would
answer 5xx), and the signature key never appears in a reason."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erp_bridge.connectors.square.webhooks import TYPES, WebhookRejected
from tests.fakes.square import NOTIFICATION_URL, FakeSquare, connector_for

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                           max_leaves=12)
count = st.fixed_dictionaries({"catalog_object_id": st.one_of(st.text(max_size=8), st.integers()),
                               "location_id": st.one_of(st.text(max_size=8), st.none())})
now = datetime.now(UTC).isoformat()
events = st.fixed_dictionaries({
    "type": st.one_of(st.sampled_from(TYPES), st.text(max_size=12)),
    "event_id": st.one_of(st.uuids().map(str), st.text(max_size=5), st.integers(), st.none()),
    "created_at": st.one_of(st.just(now), st.text(max_size=25), st.integers()),
    "data": st.one_of(json_values, st.fixed_dictionaries({"object": st.fixed_dictionaries(
        {"inventory_counts": st.one_of(st.lists(count, max_size=3), json_values)})}))})
bodies = st.one_of(events.map(lambda e: json.dumps(e).encode()), st.binary(max_size=64),
                   json_values.map(lambda v: json.dumps(v).encode()))


@pytest.fixture(scope="module")
def square_connector(tmp_path_factory):
    with FakeSquare() as square:
        connector = connector_for(square, tmp_path_factory.mktemp("square-fuzz"))
        yield square, connector
        connector.close()


@FUZZ
@given(body=bodies)
def test_a_signed_delivery_is_taken_or_refused_with_4xx(square_connector, body):
    square, connector = square_connector
    headers = {"x-square-hmacsha256-signature": square.sign(NOTIFICATION_URL, body)}
    try:
        assert connector.verify_webhook(headers, body, "") == []
    except WebhookRejected as refused:
        assert refused.status in (400, 401) and square.signature_key not in str(refused)
