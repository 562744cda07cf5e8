"""The race the read order exists for: 50 concurrent real-time checks for the last units of an
item while sales of those units arrive through the real webhook intake and the real dispatcher
applies them in SAP (Service Layer fake over HTTP). No answer may ever report more than the true
remaining figure at the moment the check started: stock - sales acknowledged before it - the
safety buffer (1 in mappings/yahoo_store.yaml)."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.unit.pull.harness import form
from tests.unit.pull.stack import order_webhook

from .test_pull_http import bridge, sl  # noqa: F401 (fixtures)

STOCK, BUFFER, CHECKERS, ROUNDS = 5, 1, 50, 4


def overreports(checks: list[tuple[float, int]], acked: list[float]) -> list[tuple[float, int, int]]:
    """(started, answered, true figure) for every check that showed more than the truth."""
    out = []
    for started, answered in checks:
        truth = max(STOCK - sum(1 for t in acked if t < started) - BUFFER, 0)
        if answered > truth:
            out.append((started, answered, truth))
    return out


def test_the_checker_flags_an_answer_that_ignores_an_acknowledged_sale():
    assert overreports([(2.0, 4)], acked=[1.0]) == [(2.0, 4, 3)]
    assert overreports([(0.5, 4), (2.0, 3)], acked=[1.0]) == []


@pytest.mark.parametrize("fresh_s", [5, 0], ids=["answers_from_cache", "answers_live"])
def test_no_check_reports_more_than_remains_while_the_last_units_sell(sl, bridge, fresh_s):  # noqa: F811
    sl.stock("CHAIR-BLUE", "01", STOCK)
    sl.stock("CHAIR-BLUE", "02", 0)
    client = bridge(sl.url, fresh_s=fresh_s)
    assert client.post("/realtime/yahoo_store", data=form("CHAIR-BLUE")).headers["Available"] == str(STOCK - BUFFER)
    checks, acked, lock, go = [], [], threading.Lock(), threading.Barrier(CHECKERS + 1)

    def checker(_):
        go.wait()
        for _ in range(ROUNDS):
            started = time.monotonic()
            response = client.post("/realtime/yahoo_store", data=form("CHAIR-BLUE"))
            assert response.status_code == 200
            with lock:
                checks.append((started, int(response.headers["Available"])))

    def seller():
        go.wait()
        for _ in range(STOCK):
            headers, body = order_webhook("chair-blue", 1)
            assert client.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
            with lock:
                acked.append(time.monotonic())  # after the 2xx: stored durably
            time.sleep(0.01)

    with ThreadPoolExecutor(CHECKERS + 1) as pool:
        futures = [pool.submit(checker, i) for i in range(CHECKERS)] + [pool.submit(seller)]
        for f in futures:
            f.result(timeout=120)
    assert len(checks) == CHECKERS * ROUNDS and len(acked) == STOCK
    assert overreports(checks, acked) == []
    assert {a for _, a in checks} - {0} , "no check ever saw stock: the race was not run"
    assert sl.wait_for(lambda s: s.items["CHAIR-BLUE"]["01"]["InStock"] == 0, 20)
    assert client.post("/realtime/yahoo_store", data=form("CHAIR-BLUE")).headers["Available"] == "0"
