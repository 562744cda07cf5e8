"""Lightspeed Retail (R-Series): the real connector, built from mappings/lightspeed_r.yaml by the
registry, on the fake R-Series API (tests/fakes/lightspeed_r.py): qoh per shop out, completed
sales in by polling, the rotating OAuth refresh token, and the leaky bucket paced from its headers."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from erp_bridge.connectors.runtime.pacing import NoPacing
from erp_bridge.domain import Decrement, Delivered, Figure, Increment
from erp_bridge.errors import ConfigError, RejectedError, RetryableError
from tests.fakes.http_server import Fault
from tests.fakes.lightspeed_r import FIRST_REFRESH, FakeLightspeedR, connector_for
from tests.pg import pg_url  # noqa: F401 - fixture


@pytest.fixture
def world(tmp_path):
    with FakeLightspeedR() as fake:
        fake.ls.stock("7", "1", 5)
        fake.ls.stock("8", "1", 2)
        connector = connector_for(fake, tmp_path / "m")
        yield fake, connector
        connector.close()
        assert fake.ls.violations == []


def figure(sku: str, quantity: str, location: str = "WH/Stock") -> Figure:
    return Figure(sku, location, Decimal(quantity))


def writes(fake) -> list:
    return [r for r in fake.ls.requests if r[0] == "PUT"]


def test_figures_set_qoh_per_shop_rounded_down_one_put_per_item(world):
    fake, connector = world
    results = connector.push_availability([figure("chair-blue", "9.7"), figure("chair-red", "0")])
    assert all(isinstance(r, Delivered) for r in results), results
    assert (fake.ls.qoh("7", "1"), fake.ls.qoh("8", "1")) == (9, 0)
    put = writes(fake)[0][3]
    assert put == {"ItemShops": {"ItemShop": [{"itemShopID": fake.ls.items["7"]["1"]["itemShopID"], "qoh": 9}]}}


def test_a_shop_already_right_is_not_written(world):
    fake, connector = world
    assert connector.push_availability([figure("chair-blue", "5")]) == [Delivered("unchanged")]
    assert writes(fake) == []


def test_an_item_not_stocked_at_the_shop_or_unknown_is_refused_by_name(world):
    fake, connector = world
    fake.ls.items.pop("8")
    del fake.ls.items["7"]["1"]
    missing_shop, missing_item = connector.push_availability([figure("chair-blue", "3"), figure("chair-red", "3")])
    assert isinstance(missing_shop, RejectedError) and "no ItemShop for shop 1" in str(missing_shop)
    assert isinstance(missing_item, RejectedError) and "no item 8" in str(missing_item)


def test_an_unmapped_sku_is_refused_without_a_call(world):
    fake, connector = world
    [result] = connector.push_availability([figure("sofa", "1")])
    assert isinstance(result, RejectedError) and "sofa" in str(result)
    assert fake.ls.requests == []


def test_a_5xx_fails_the_item_and_leaves_the_rest_not_attempted(world):
    fake, connector = world
    fake.fail_next(Fault(503, {"Content-Type": "application/json"}, b'{"message": "down"}', path="/Item/7"))
    first, second = connector.push_availability([figure("chair-blue", "1"), figure("chair-red", "1")])
    assert isinstance(first, RetryableError) and isinstance(second, RetryableError)
    assert type(second).__name__ == "NotAttempted" and "HTTP 503" in str(first) and "down" in str(first)
    assert fake.ls.qoh("8", "1") == 2


def test_the_first_poll_starts_now_then_completed_sales_come_in_keyed_by_sale_and_line(world):
    fake, connector = world
    fake.ls.sell([("7", 1)])  # before the bridge was connected: already in the SoR's stock
    assert connector.poll_changes().changes == []
    connector.commit_poll(connector.poll_changes())
    time.sleep(1.1)  # timeStamps have whole seconds
    sale = fake.ls.sell([("7", 2), ("8", -1)])
    fake.ls.sell([("7", 4)], completed=False)  # still open at the till: not a sale yet
    polled = connector.poll_changes()
    sold, back = polled.changes
    lines = sale["SaleLines"]["SaleLine"]
    assert isinstance(sold, Decrement) and (sold.item, sold.location, sold.quantity) == ("chair-blue", "1", 2)
    assert sold.idempotency_key == f"lightspeed_r:{sale['saleID']}:{lines[0]['saleLineID']}"
    assert isinstance(back, Increment) and back.reason == "return" and (back.item, back.quantity) == ("chair-red", 1)
    connector.commit_poll(polled)
    assert connector.poll_changes().changes == []  # the overlap re-reads it: seen


def test_a_voided_sale_nets_to_zero(world):
    fake, connector = world
    connector.commit_poll(connector.poll_changes())
    time.sleep(1.1)
    sale = fake.ls.sell([("7", 3)])
    connector.commit_poll(connector.poll_changes())
    time.sleep(1.1)
    fake.ls.touch(sale, voided=True)
    polled = connector.poll_changes()
    assert [type(c).__name__ for c in polled.changes] == ["Increment"]  # the decrement was counted before
    assert sum(c.signed_quantity for c in polled.changes) == 3


def test_pages_follow_the_next_url(world):
    fake, connector = world
    connector.commit_poll(connector.poll_changes())
    time.sleep(1.1)
    for _ in range(130):
        fake.ls.sell([("7", 1)])
    polled = connector.poll_changes()
    assert len(polled.changes) == 130
    assert any("after" in r[2] for r in fake.ls.requests if r[1].endswith("/Sale.json"))


def test_an_expired_token_is_renewed_with_the_rotated_refresh_token(world):
    fake, connector = world
    connector.push_availability([figure("chair-blue", "4")])
    fake.ls.expire_tokens()
    assert connector.push_availability([figure("chair-blue", "6")]) == [Delivered("qoh set")]
    assert fake.ls.token_requests == 2 and FIRST_REFRESH in fake.ls.revoked  # the second used the new one


def test_a_config_that_is_not_an_account_url_is_refused(tmp_path):
    with FakeLightspeedR() as fake:
        from erp_bridge.connectors import registry
        from tests.fakes.lightspeed_r import SECRETS, example_mapping_set
        mappings = example_mapping_set(tmp_path, fake)
        m = mappings.systems["lightspeed_r"]
        broken = m.model_copy(update={"connection": m.connection.model_copy(update={"base_url": fake.origin})})
        with pytest.raises(ConfigError, match="Account/<accountID>"):
            registry.build(broken, SECRETS, mappings.lookups, storage_url=f"sqlite:///{tmp_path}/q.sqlite3")


def pushes(connector, n: int, sku: str = "chair-blue") -> None:
    for i in range(n):
        connector.push_availability([figure(sku, str(10 + i % 2))])


def test_the_bucket_never_overflows_when_paced_by_its_headers(tmp_path):
    with FakeLightspeedR(bucket_size=25, drip=20) as fake:  # 2 reads + 10 per write; a small fast bucket
        fake.ls.stock("7", "1", 5)
        connector = connector_for(fake, tmp_path)
        started = time.monotonic()
        pushes(connector, 8)  # 8 x (GET 1 + PUT 10) = 88 units into a bucket of 25
        took = time.monotonic() - started
        connector.close()
    assert fake.ls.bucket.overflows == 0 and fake.ls.bucket.peak <= 25
    assert took >= (88 - 25) / 20 * 0.8  # it waited for the drip, as the headers said


def test_without_pacing_the_same_calls_overflow_the_bucket(tmp_path):
    """The test above can fail: the fake answers 429 when a request would overflow."""
    with FakeLightspeedR(bucket_size=25, drip=20) as fake:
        fake.ls.stock("7", "1", 5)
        connector = connector_for(fake, tmp_path)
        connector._sender.pacer = NoPacing()
        pushes(connector, 8)
        connector.close()
    assert fake.ls.bucket.overflows > 0


def test_hosts_writing_to_one_account_share_its_bucket(tmp_path, pg_url):  # noqa: F811
    """On PostgreSQL two processes (own connection pools, own per-process buckets) writing to one
    account at once pace their calls from one bucket row: together they never overflow it. Each
    alone would spend the whole bucket, and learn of the other's calls only from the next answer."""
    import threading

    from erp_bridge.connectors import lightspeed_r
    with FakeLightspeedR(bucket_size=25, drip=20) as fake:
        fake.ls.stock("7", "1", 5)
        fake.ls.stock("8", "1", 5)
        built = []
        for n in "ab":  # each host's process keeps its own LeakyBucket
            lightspeed_r._buckets.clear()
            built.append(connector_for(fake, tmp_path / n, storage_url=pg_url + f"&application_name=host-{n}"))
        try:
            hosts = [threading.Thread(target=pushes, args=(c, 4, sku)) for c, sku in zip(built, ("chair-blue", "chair-red"))]
            for host in hosts:
                host.start()
            for host in hosts:
                host.join(30)
        finally:
            for connector in built:
                connector.close()
            lightspeed_r._buckets.clear()
    assert len(writes(fake)) == 8 and fake.ls.bucket.overflows == 0 and fake.ls.bucket.peak <= 25
