"""The Square connector against the fake Square (a real HTTP server that validates every request
against ../shared/specs/square/api.json): counts out, sales in from the history, every failure."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from erp_bridge.domain import Delivered, Figure
from erp_bridge.errors import BridgeError, ConfigError, NotAttempted, RejectedError, RetryableError
from tests.fakes import square_spec
from tests.fakes.square import LOCATION, RATE_LIMITED, VARIATIONS, FakeSquare, Fault, connector_for, error

pytestmark = pytest.mark.skipif(not square_spec.available(),
                                reason="../shared/specs/square/api.json is not beside the repo")
BLUE, RED = VARIATIONS["chair-blue"], VARIATIONS["chair-red"]
CREATE = "/v2/inventory/changes/batch-create"


def figure(sku: str, quantity) -> Figure:
    return Figure(sku, "WH/Stock", Decimal(str(quantity)))


@pytest.fixture
def square():
    with FakeSquare() as fake:
        fake.stock("chair-blue", 3)
        fake.stock("chair-red", 2)
        yield fake
        assert fake.violations == []  # nothing the connector sent broke Square's contract


@pytest.fixture
def connector(square, tmp_path):
    built = connector_for(square, tmp_path)
    yield built
    built.close()


def writes(square: FakeSquare) -> list[dict]:
    return [body for path, body in square.received if path == CREATE]


# -- availability out ---------------------------------------------------------------------------

def test_counts_are_set_unchanged_ones_skipped_unknown_skus_refused(square, connector):
    results = connector.push_availability([figure("chair-blue", 5), figure("chair-red", 2), figure("stool", 1)])
    assert results[:2] == [Delivered("counted"), Delivered("unchanged")]
    assert isinstance(results[2], RejectedError) and "stool" in str(results[2])
    assert square.counts[(BLUE, LOCATION)] == 5 and len(writes(square)) == 1
    count = writes(square)[0]["changes"][0]["physical_count"]
    assert count["quantity"] == "5" and count["state"] == "IN_STOCK" and count["reference_id"].startswith("erp-bridge:")


def test_read_listed_says_what_square_counts_for_reconciliation(square, connector):
    square.counts[(BLUE, LOCATION)] = Decimal("4.5")
    listed = connector.read_listed([("chair-blue", "WH/Stock"), ("chair-red", "WH/Stock"), ("stool", "WH/Stock")])
    assert listed == {("chair-blue", "WH/Stock"): Decimal("4.5"), ("chair-red", "WH/Stock"): Decimal(2)}
    assert writes(square) == []  # a read only
    square.fail_next(RATE_LIMITED)
    with pytest.raises(RetryableError):
        connector.read_listed([("chair-blue", "WH/Stock")])


def test_quantities_go_as_decimal_strings_rounded_down_to_five_decimals(square, connector):
    assert connector.push_availability([figure("chair-blue", "1.2345678")]) == [Delivered("counted")]
    assert writes(square)[0]["changes"][0]["physical_count"]["quantity"] == "1.23456"


def test_batches_hold_at_most_100_changes(square, tmp_path):
    extra = {f"bulk-{n:03d}": f"BULKVAR{n:05d}" for n in range(250)}
    for code in extra.values():
        square.stock(code, 0)
    connector = connector_for(square, tmp_path, extra_items=extra, batch_size=1000)
    results = connector.push_availability([figure(sku, 1) for sku in extra])
    assert results == [Delivered("counted")] * 250
    assert [len(body["changes"]) for body in writes(square)] == [100, 100, 50]
    connector.close()


def test_a_batch_refused_for_one_row_is_retried_row_by_row(square, tmp_path):
    connector = connector_for(square, tmp_path, extra_items={"ghost": "GHOSTVARIATION1"})
    results = connector.push_availability([figure("chair-blue", 4), figure("ghost", 1), figure("chair-red", 6)])
    assert results[0] == Delivered("counted") and results[2] == Delivered("counted")
    assert isinstance(results[1], RejectedError)
    assert "NOT_FOUND" in str(results[1]) and "GHOSTVARIATION1" in str(results[1])
    assert square.counts[(BLUE, LOCATION)] == 4 and square.counts[(RED, LOCATION)] == 6
    connector.close()


@pytest.mark.parametrize("fault, kind", [
    (RATE_LIMITED, RetryableError),
    (Fault(503, error("API_ERROR", "SERVICE_UNAVAILABLE", "Service unavailable")), RetryableError),
    (Fault(500, {"errors": [{"category": "API_ERROR", "code": "INTERNAL_SERVER_ERROR"}]}), RetryableError),
    (Fault(hang_s=3.0), RetryableError),
], ids=["429", "503", "500", "timeout"])
def test_throttled_or_down_fails_the_batch_and_leaves_the_rest_unsent(square, tmp_path, fault, kind):
    connector = connector_for(square, tmp_path, batch_size=1)
    square.fail_next(Fault(**{**fault.__dict__, "path": CREATE}))
    results = connector.push_availability([figure("chair-blue", 5), figure("chair-red", 6)])
    assert isinstance(results[0], kind) and isinstance(results[1], NotAttempted)
    assert square.counts[(RED, LOCATION)] == 2
    connector.close()


def test_429_says_rate_limited_and_honours_retry_after(square, connector):
    square.fail_next(Fault(429, RATE_LIMITED.body, {"Retry-After": "7"}, path=CREATE))
    result = connector.push_availability([figure("chair-blue", 5)])[0]
    assert isinstance(result, RetryableError) and result.after == 7 and "RATE_LIMITED" in str(result)


def test_a_lost_answer_is_retried_and_applied_once(square, connector):
    square.fail_next(Fault(lost=True, path=CREATE))
    assert isinstance(connector.push_availability([figure("chair-blue", 5)])[0], RetryableError)
    assert square.counts[(BLUE, LOCATION)] == 5  # Square applied it; the answer was lost
    assert connector.push_availability([figure("chair-blue", 5)]) == [Delivered("unchanged")]


def test_a_refused_token_is_a_config_error_without_the_token(square, tmp_path):
    square.token = "rotated"
    connector = connector_for(square, tmp_path)
    square.token = "rotated-again"
    result = connector.push_availability([figure("chair-blue", 5)])[0]
    assert isinstance(result, ConfigError) and "square_token" in str(result) and "rotated" not in str(result)
    connector.close()


def test_the_idempotency_key_is_derived_from_the_content(square, connector):
    moment = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    connector._clock = lambda: moment
    assert connector.push_availability([figure("chair-blue", 5)]) == [Delivered("counted")]
    square.stock("chair-blue", 3)  # Square moved since: the same count is sent again, same content
    assert connector.push_availability([figure("chair-blue", 5)]) == [Delivered("counted")]
    first, second = writes(square)
    assert first == second  # same key, same body: Square answers the first response again
    assert connector.push_availability([figure("chair-blue", 6)]) == [Delivered("counted")]
    assert writes(square)[2]["idempotency_key"] != first["idempotency_key"]


# -- sales in -----------------------------------------------------------------------------------

def test_a_sale_counts_once_across_polls_redeliveries_and_restarts(square, tmp_path):
    storage = f"sqlite:///{tmp_path}/queue.sqlite3"
    connector = connector_for(square, tmp_path, storage_url=storage)
    connector.commit_poll(connector.poll_changes())  # the first pass starts the history now
    connector.push_availability([figure("chair-blue", 5)])  # the bridge's own count: an echo
    square.sell("chair-blue", 2, "txn-1")
    polled = connector.poll_changes()
    assert [(c.kind, c.idempotency_key, c.item, c.quantity) for c in polled.changes] == [
        ("decrement", f"square:txn-1:{square.changes('ADJUSTMENT')[0]['adjustment']['id']}", "chair-blue", 2)]
    assert polled.reports == ()
    again = connector.poll_changes()  # not committed yet (a crash before the entries were stored)
    assert [c.idempotency_key for c in again.changes] == [c.idempotency_key for c in polled.changes]
    connector.commit_poll(again)
    assert connector.poll_changes().changes == []
    connector.close()
    restarted = connector_for(square, tmp_path, storage_url=storage)
    assert restarted.poll_changes().changes == []
    restarted.close()


def test_returns_restock_and_recounts_are_reported(square, connector):
    connector.commit_poll(connector.poll_changes())
    square.restock("chair-red", 1, "refund-7")
    square.recount("chair-blue", 9)
    polled = connector.poll_changes()
    assert [(c.kind, c.order, c.quantity) for c in polled.changes] == [("increment", "refund-7", 1)]
    assert len(polled.reports) == 1 and "recounted to 9" in polled.reports[0] and "chair-blue" in polled.reports[0]


def test_a_failed_history_read_raises_and_keeps_the_cursor(square, connector):
    connector.commit_poll(connector.poll_changes())
    cursor = connector._inbox.cursor("changes")
    square.sell("chair-blue", 1, "txn-2")
    square.fail_next(RATE_LIMITED)
    with pytest.raises(BridgeError):
        connector.poll_changes()
    assert connector._inbox.cursor("changes") == cursor
    assert len(connector.poll_changes().changes) == 1


def test_history_pages_are_followed(square, connector):
    connector.commit_poll(connector.poll_changes())
    for n in range(1205):
        square._adjust("chair-blue", LOCATION, 1, "IN_STOCK", "SOLD", transaction_id=f"t{n}")
    assert len(connector.poll_changes().changes) == 1205


def test_throttled_while_going_row_by_row_leaves_the_rest_for_later(square, tmp_path):
    connector = connector_for(square, tmp_path, extra_items={"ghost": "GHOSTVARIATION1"})
    refused = Fault(400, error("INVALID_REQUEST_ERROR", "NOT_FOUND", "no such variation",
                               "changes[1].physical_count.catalog_object_id"), path=CREATE)
    square.fail_next(refused, Fault(**{**RATE_LIMITED.__dict__, "path": CREATE}))  # the batch, then its first row
    results = connector.push_availability([figure("chair-blue", 4), figure("ghost", 1), figure("chair-red", 6)])
    assert isinstance(results[0], RetryableError) and not isinstance(results[0], NotAttempted)
    assert isinstance(results[1], NotAttempted) and isinstance(results[2], NotAttempted)
    connector.close()
