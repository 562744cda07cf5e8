"""Per-target results go back to the outbox an entry came from (Odoo's Stock Sync screens)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from erp_bridge.domain import AvailabilityChanged, StockMove
from erp_bridge.errors import RetryableError
from erp_bridge.queue import open_queue
from erp_bridge.queue.base import NewEntry, RetryPolicy, State
from erp_bridge.sync.outbox import OutboxPoller


class OdooApi:
    """Records acknowledgements as the module's API takes them (answers like it: one per result)."""

    def __init__(self, fail: bool = False):
        self.calls: list[tuple[str, list]] = []
        self.fail = fail

    def _ack(self, name, results):
        self.calls.append((name, results))
        if self.fail:
            raise RetryableError("Odoo ack_markers: cannot reach the server")
        return [{"id": r["id"], "target": r["target"], "status": "done"} for r in results]

    def ack_markers(self, results):
        return self._ack("ack_markers", results)

    def ack_journal(self, results):
        return self._ack("ack_journal", results)


@pytest.fixture
def queue(tmp_path):
    return open_queue(f"sqlite:///{tmp_path}/q.db", RetryPolicy())


def entry(queue, target, event, key):
    return queue.enqueue([NewEntry(target=target, kind=event.kind, item=event.item, location=event.location,
                                   idempotency_key=key, payload=event.model_dump(mode="json"))])[0]


def test_results_are_reported_once_per_pass_by_kind(queue):
    api = OdooApi()
    poller = OutboxPoller("odoo", api, None, queue, None, 1.0)
    marker = entry(queue, "shopify", AvailabilityChanged(system="odoo", item="A", location="WH",
                                                        source_ref="marker:5:77"), "k1")
    move = entry(queue, "sap_b1", StockMove(system="odoo", move_id="9", item="A", quantity=Decimal(1),
                                            from_location="WH", to_location="Customers", location="WH",
                                            direction="out", source_ref="journal:3:4"), "k2")
    poller.report("shopify", marker, State.DONE, None)
    poller.report("sap_b1", move, State.DEAD, "SAP error -5002: Item A not found")
    poller._send_reports()
    assert api.calls == [
        ("ack_markers", [{"id": 5, "sequence": 77, "target": "shopify", "state": "done"}]),
        ("ack_journal", [{"id": 3, "sequence": 4, "target": "sap_b1", "state": "dead",
                          "error": "SAP error -5002: Item A not found"}])]
    poller._send_reports()
    assert len(api.calls) == 2  # sent once


@pytest.mark.parametrize("event", [
    pytest.param(AvailabilityChanged(system="odoo", item="A", location="WH"), id="no-source-ref"),
    pytest.param(AvailabilityChanged(system="sap_b1", item="A", location="WH", source_ref="marker:5:77"),
                 id="another-system"),
])
def test_entries_not_from_this_outbox_are_not_reported(queue, event):
    api = OdooApi()
    poller = OutboxPoller("odoo", api, None, queue, None, 1.0)
    poller.report("shopify", entry(queue, "shopify", event, "k"), State.DONE, None)
    poller._send_reports()
    assert api.calls == []


def test_a_failed_report_is_dropped_not_raised(queue, caplog):
    api = OdooApi(fail=True)
    poller = OutboxPoller("odoo", api, None, queue, None, 1.0)
    event = AvailabilityChanged(system="odoo", item="A", location="WH", source_ref="marker:1:2")
    poller.report("shopify", entry(queue, "shopify", event, "k"), State.DONE, None)
    poller._send_reports()  # must not raise: the row was completed when the bridge took it over
    assert "reporting 1 marker result(s) to odoo failed" in caplog.text
