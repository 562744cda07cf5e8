"""runtime/batch.py: a batch stops at the first sign the target is down; the rest is not attempted."""
from __future__ import annotations

from dataclasses import dataclass

from erp_bridge.connectors.runtime.batch import in_batches, unsent_rows, until_down
from erp_bridge.domain import Delivered
from erp_bridge.errors import NotAttempted, RejectedError, RetryableError


@dataclass(frozen=True)
class Row:
    index: int


def test_until_down_sends_in_order_and_stops_at_the_first_retryable_failure() -> None:
    down = RetryableError("503 from the target", after=30)
    sent: list[int] = []

    def send(n: int):
        sent.append(n)
        return down if n == 2 else Delivered()

    results = until_down([1, 2, 3, 4], send)
    assert sent == [1, 2]
    assert results[:2] == [Delivered(), down]
    assert all(isinstance(r, NotAttempted) and r.after == 30 for r in results[2:])


def test_a_rejected_row_does_not_stop_the_batch() -> None:
    bad = RejectedError("unknown SKU")
    results = until_down([1, 2, 3], lambda n: bad if n == 1 else Delivered())
    assert results == [bad, Delivered(), Delivered()]


def test_in_batches_marks_every_row_after_the_batch_that_found_the_target_down() -> None:
    rows = [Row(i) for i in range(7)]
    outcomes: list[object] = [None] * 7
    down = RetryableError("429", after=5)
    pushed: list[list[int]] = []

    def push(batch: list[Row]) -> RetryableError | None:
        pushed.append([r.index for r in batch])
        for row in batch:
            outcomes[row.index] = down if len(pushed) == 2 else Delivered()
        return down if len(pushed) == 2 else None

    assert in_batches(rows, 3, push, unsent_rows(outcomes)) is down
    assert pushed == [[0, 1, 2], [3, 4, 5]]  # the third batch is never sent
    assert outcomes[:3] == [Delivered()] * 3 and outcomes[3:6] == [down] * 3
    assert isinstance(outcomes[6], NotAttempted) and outcomes[6].after == 5


def test_in_batches_of_one_is_how_a_refused_batch_is_split_row_by_row() -> None:
    outcomes: list[object] = [None] * 3
    rows = [Row(0), Row(1), Row(2)]

    def push(one: list[Row]) -> RetryableError | None:
        outcomes[one[0].index] = RejectedError("bad row") if one[0].index == 1 else Delivered()
        return None

    assert in_batches(rows, 1, push, unsent_rows(outcomes)) is None
    assert outcomes[0] == Delivered() and outcomes[2] == Delivered()
    assert isinstance(outcomes[1], RejectedError)
