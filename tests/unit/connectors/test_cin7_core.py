"""Cin7 Core: the real connector, built from mappings/cin7_core.yaml by the registry, on the fake
Cin7 Core API (tests/fakes/cin7_core.py, checked against the blueprint): stock adjustments out,
sales in by polling the sale list, voids and credit notes restocking once, 60 calls a minute."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from erp_bridge.connectors.runtime.pacing import LeakyBucket
from erp_bridge.domain import Decrement, Delivered, Figure, Increment
from erp_bridge.errors import ConfigError, RejectedError, Throttled
from tests.fakes import cin7_blueprint
from tests.fakes.cin7_core import ACCOUNT_ID, APPLICATION_KEY, LOCATION, SECRETS, FakeCin7, connector_for
from tests.pg import pg_url  # noqa: F401 - fixture

pytestmark = pytest.mark.skipif(not cin7_blueprint.available(), reason="../shared/specs/cin7-core is not beside the repo")


@pytest.fixture
def world(tmp_path):
    with FakeCin7() as fake:
        connector = connector_for(fake, tmp_path / "m")
        yield fake, connector
        connector.close()
        assert fake.cin7.violations == []


def figure(sku: str, quantity: str) -> Figure:
    return Figure(sku, "WH/Stock", Decimal(quantity))


def started(connector) -> None:
    connector.commit_poll(connector.poll_changes())  # the first pass starts the history now


def test_figures_go_out_as_one_completed_stock_adjustment(world):
    fake, connector = world
    results = connector.push_availability([figure("chair-blue", "7.5"), figure("chair-red", "0")])
    assert results == [Delivered("stock adjusted")] * 2
    assert fake.cin7.stock == {("CHR-BLU", LOCATION): Decimal("7.5"), ("CHR-RED", LOCATION): Decimal(0)}
    [adjustment] = fake.cin7.adjustments
    assert adjustment["Status"] == "COMPLETED" and adjustment["UpdateOnHand"] is False
    headers = fake.cin7.requests[0][4]
    assert (headers["api-auth-accountid"], headers["api-auth-applicationkey"]) == (ACCOUNT_ID, APPLICATION_KEY)


def test_a_line_cin7_refuses_dead_letters_with_its_message_and_the_others_go_through(world, tmp_path):
    fake, connector = world
    fake.cin7.locations.clear()
    fake.cin7.locations.add("Elsewhere")
    [result] = connector.push_availability([figure("chair-blue", "1")])
    assert isinstance(result, RejectedError) and "Location 'Main Warehouse' not found" in str(result)
    fake.cin7.locations.add(LOCATION)
    from tests.fakes import cin7_core
    cin7_core.PRODUCTS.pop("CHR-RED")
    try:
        good, bad = connector.push_availability([figure("chair-blue", "2"), figure("chair-red", "2")])
    finally:
        cin7_core.PRODUCTS["CHR-RED"] = "7a0d6c1e-2f49-4c55-9a1b-0e3f5d2c8b17"
    assert good == Delivered("stock adjusted") and isinstance(bad, RejectedError) and "CHR-RED" in str(bad)
    assert fake.cin7.stock[("CHR-BLU", LOCATION)] == 2


def test_an_unmapped_sku_is_refused_without_a_call(world):
    fake, connector = world
    [result] = connector.push_availability([figure("sofa", "1")])
    assert isinstance(result, RejectedError) and "sofa" in str(result) and fake.cin7.requests == []


def test_an_authorised_sale_comes_in_once_per_product(world):
    fake, connector = world
    started(connector)
    fake.cin7.sell([("CHR-BLU", 2), ("CHR-BLU", 1), ("CHR-RED", 1)])
    draft = fake.cin7.sell([("CHR-RED", 5)], order_status="DRAFT")
    polled = connector.poll_changes()
    assert sorted((c.item, c.quantity) for c in polled.changes) == [("chair-blue", 3), ("chair-red", 1)]
    assert all(isinstance(c, Decrement) and c.location == LOCATION for c in polled.changes)
    read = [r[2]["ID"][0] for r in fake.cin7.requests if r[1].endswith("/sale")]
    assert draft not in read  # a draft order sold nothing: its detail is not even read
    connector.commit_poll(polled)
    before = len(fake.cin7.requests)
    assert connector.poll_changes().changes == []
    assert [r[1] for r in fake.cin7.requests[before:]] == ["/ExternalApi/v2/saleList"]  # seen: no detail read again


def test_a_voided_sale_restocks_exactly_once(world):
    fake, connector = world
    started(connector)
    sale = fake.cin7.sell([("CHR-BLU", 2)])
    connector.commit_poll(connector.poll_changes())
    time.sleep(0.01)
    fake.cin7.void(sale)
    polled = connector.poll_changes()
    assert [(type(c).__name__, c.quantity) for c in polled.changes] == [("Increment", 2)]
    connector.commit_poll(polled)
    assert connector.poll_changes().changes == []


def test_a_sale_voided_before_the_bridge_saw_it_nets_to_zero(world):
    fake, connector = world
    started(connector)
    fake.cin7.void(fake.cin7.sell([("CHR-BLU", 2)]))
    changes = connector.poll_changes().changes
    assert sum(c.signed_quantity for c in changes) == 0 and len(changes) == 2


def test_a_credit_note_restocks_its_lines_once(world):
    fake, connector = world
    started(connector)
    sale = fake.cin7.sell([("CHR-BLU", 3)])
    connector.commit_poll(connector.poll_changes())
    time.sleep(0.01)
    task = fake.cin7.credit(sale, [("CHR-BLU", 1)])
    polled = connector.poll_changes()
    [back] = polled.changes
    assert isinstance(back, Increment) and back.reason == "return" and back.quantity == 1 and task in back.line
    connector.commit_poll(polled)
    assert connector.poll_changes().changes == []


def test_the_sale_list_is_paged(world):
    fake, connector = world
    started(connector)
    from erp_bridge.connectors.cin7_core import connector as module
    for _ in range(5):
        fake.cin7.sell([("CHR-BLU", 1)])
    original = module.LIMIT
    module.LIMIT = 2
    try:
        assert len(connector.poll_changes().changes) == 5
    finally:
        module.LIMIT = original
    pages = [r[2]["Page"][0] for r in fake.cin7.requests if r[1].endswith("/saleList")]
    assert pages[-3:] == ["1", "2", "3"]


def test_over_the_limit_cin7_answers_503_and_the_error_waits_out_the_minute(tmp_path):
    with FakeCin7(calls_per_window=2, window_s=60) as fake:
        connector = connector_for(fake, tmp_path)
        started(connector)
        connector.push_availability([figure("chair-blue", "1")])
        [result] = connector.push_availability([figure("chair-blue", "2")])
        connector.close()
    assert isinstance(result, Throttled) and "60 calls per minute" in str(result) and result.after == 60


def test_the_pacer_keeps_calls_under_the_limit(tmp_path):
    with FakeCin7(calls_per_window=5, window_s=1.0) as fake:  # Cin7's 60 a minute, 60 times faster
        connector = connector_for(fake, tmp_path)
        connector._sender.pacer = LeakyBucket(1.0, 4.5)  # what the connector does, scaled alike (58/60 s)
        for n in range(10):
            assert connector.push_availability([figure("chair-blue", str(n))]) == [Delivered("stock adjusted")]
        connector.close()
    assert fake.cin7.rate_limited == 0


def test_the_connector_paces_below_sixty_a_minute_by_default(tmp_path):
    with FakeCin7() as fake:
        connector = connector_for(fake, tmp_path, fast=False)
        pacer = connector._sender.pacer
        connector.close()
    assert isinstance(pacer.own, LeakyBucket) and pacer.own.drip * 60 < 60 and pacer.own.size == 1
    assert (pacer.shared.rate, pacer.shared.burst) == (pacer.own.drip, 1)


@pytest.mark.postgres
def test_hosts_calling_one_application_share_its_pace(tmp_path, pg_url):  # noqa: F811
    """On PostgreSQL two processes (own connection pools) take the application's calls from one
    bucket: after host a's call, host b waits for the next of the 58 a minute."""
    with FakeCin7() as fake:
        built = [connector_for(fake, tmp_path / n, storage_url=pg_url + f"&application_name=host-{n}", fast=False)
                 for n in "ab"]
        try:
            a, b = (c._sender.pacer for c in built)
            started = time.monotonic()
            a.wait("GET")
            assert time.monotonic() - started < 0.5  # the first call goes at once
            assert b.shared.reserve(1) > 0.9  # host b's next call is about 60/58 s away
        finally:
            for connector in built:
                connector.close()


def test_auth_must_name_both_headers(tmp_path):
    with FakeCin7() as fake:
        from erp_bridge.connectors import registry
        from tests.fakes.cin7_core import example_mapping_set
        mappings = example_mapping_set(tmp_path, fake)
        m = mappings.systems["cin7_core"]
        auth = m.connection.auth.model_copy(update={"secrets": {"api-auth-accountid": "cin7_account_id"}})
        broken = m.model_copy(update={"connection": m.connection.model_copy(update={"auth": auth})})
        with pytest.raises(ConfigError, match="api-auth-applicationkey"):
            registry.build(broken, SECRETS, mappings.lookups, storage_url=f"sqlite:///{tmp_path}/q.sqlite3")


def test_wrong_credentials_say_what_to_check_without_the_key(tmp_path):
    with FakeCin7() as fake:
        connector = connector_for(fake, tmp_path)
        connector._sender.auth.values["api-auth-applicationkey"] = "wrong-key-123"
        connector._sender.auth.secret_values = ("wrong-key-123", ACCOUNT_ID)
        [result] = connector.push_availability([figure("chair-blue", "1")])
        connector.close()
    assert isinstance(result, RejectedError) and "403" in str(result) and "application key" in str(result)
    assert "wrong-key-123" not in str(result) and ACCOUNT_ID not in str(result)
