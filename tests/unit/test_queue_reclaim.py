"""Which leases a restarted bridge may take back at once (queue.base.orphaned_owners), and the
dispatcher doing so at start with a real SQLite queue."""
from __future__ import annotations

import os
import subprocess

import pytest

from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.queue.base import NewEntry, RetryPolicy, State, orphaned_owners
from erp_bridge.queue.sqlite import SQLiteQueue

ALIVE = {100, 200}


@pytest.mark.parametrize("owner, reclaimed", [
    pytest.param("h1:100/0", False, id="live-process"),
    pytest.param("h1:300/1", True, id="gone-process-same-host"),
    pytest.param("h2:300/0", False, id="other-host"),
    pytest.param("h1:200/0", False, id="itself"),
    pytest.param("w1", False, id="not-a-process-name"),
    pytest.param("h1:x/0", False, id="no-pid"),
])
def test_only_gone_processes_on_this_host_are_orphans(owner, reclaimed):
    assert orphaned_owners([owner], "h1:200", alive=lambda pid: pid in ALIVE) == ([owner] if reclaimed else [])


def test_a_real_dead_pid_is_an_orphan_and_a_live_one_is_not():
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid no longer names a process
    owners = [f"h:{gone.pid}/0", f"h:{os.getpid()}/0"]
    assert orphaned_owners(owners, "h:1") == [f"h:{gone.pid}/0"]


def test_dispatcher_start_takes_back_its_predecessors_leases(tmp_path):
    queue = SQLiteQueue(str(tmp_path / "q.sqlite3"), RetryPolicy(max_attempts=5))
    [entry] = queue.enqueue([NewEntry(target="shop", kind="decrement", idempotency_key="k", item="I",
                                      location="WH", payload={})])
    predecessor = subprocess.Popen(["true"])
    predecessor.wait()
    assert [e.id for e in queue.lease(f"host:{predecessor.pid}/0", 10, 3600)] == [entry.id]
    dispatcher = Dispatcher(queue, {}, workers=0, name="host:1")
    dispatcher.start()
    assert queue.get(entry.id).state is State.PENDING  # due now, not in an hour
    assert queue.lease("host:1/0", 10, 30)[0].id == entry.id
    dispatcher.stop(0)
    queue.close()
