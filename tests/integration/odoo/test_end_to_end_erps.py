"""NetSuite and Dynamics 365 as mirrors of a real Odoo (issue 11), end to end: Odoo (17, 18; 19
through JSON-2) with stock_sync_bridge, the bridge as in production (`erp-bridge serve`, a
subprocess), the NetSuite SOAP double (envelopes validated against the 2023_2 XSDs) and the
F&O OData double behind a TLS Azure AD double. Each Odoo move (an applied inventory) must become
exactly one NetSuite InventoryAdjustment and one F&O journal line, through a lost answer, a
throttled burst and a `kill -9` of the bridge with both requests in flight. (With each ERP as the
system of record, a channel sale applied once: tests/integration/test_netsuite_sor_e2e.py and
test_dynamics365_sor.py, on the same runtime without Odoo.) Skipped without ODOO_SRC."""
from __future__ import annotations

import os
import re
import signal
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.fakes.azure_ad import FakeAzureAd
from tests.fakes.d365_finops import FakeFinOps
from tests.fakes.http_server import Fault as HttpFault
from tests.fakes.netsuite import SPECS, FakeNetSuite
from tests.fakes.netsuite import Fault as SoapFault

from . import bridge as b
from . import server as srv
from .conftest import BRIDGE, settle

pytestmark = [pytest.mark.odoo, pytest.mark.skipif(not SPECS.exists(), reason="../shared/specs is not present")]
REPO = Path(__file__).resolve().parents[3]
SKUS = [f"ERP-{n}" for n in range(1, 14)]
NS_IDS = {sku: str(500 + n) for n, sku in enumerate(SKUS)}


def write_config(tmp: Path, odoo_port: int, db: str, stock: str, ns: FakeNetSuite, fo: FakeFinOps) -> Path:
    maps = tmp / "mappings"
    maps.mkdir()
    auth = b.JSON2_AUTH if srv.major() >= 19 else b.SESSION_AUTH
    (maps / "odoo.yaml").write_text(b.ODOO.format(port=odoo_port, db=db, stock=stock, auth=auth))
    (maps / "netsuite.yaml").write_text(_netsuite(ns, stock))
    (maps / "dynamics365.yaml").write_text(_dynamics(fo, stock))
    port = srv.free_port()
    (tmp / "bridge.yaml").write_text(
        f"data_dir: data\nmappings_dir: mappings\nhttp: {{port: {port}}}\n"
        "workers: {count: 2, poll_interval_s: 0.05, outbox_poll_s: 0.5}\n"
        "retry: {base_s: 0.2, cap_s: 1, max_attempts: 30}\nqueue: {lease_s: 10}\n")
    return tmp / "bridge.yaml"


def _netsuite(ns: FakeNetSuite, stock: str) -> str:
    """mappings/netsuite.yaml as shipped, on the double, with this test's items and one location."""
    text = (REPO / "mappings" / "netsuite.yaml").read_text()
    text = re.sub(r"(?m)^  base_url: .*$", f"  base_url: {ns.url}", text)
    text = re.sub(r"(?m)^  wsdl: .*$", f"  wsdl: {(SPECS / 'netsuite.wsdl').resolve()}", text)
    overrides = "".join(f'    - {{sku: {sku}, code: "{code}"}}\n' for sku, code in NS_IDS.items())
    text = re.sub(r"(?ms)^  overrides:\n(    - .*?\n)+", f"  overrides:\n{overrides}", text)
    text = text.replace('    - internal: WH2/Stock\n      code: "2"\n', "")
    return text.replace("internal: WH/Stock", f"internal: {stock}")


def _dynamics(fo: FakeFinOps, stock: str) -> str:
    text = (REPO / "mappings" / "dynamics365.yaml").read_text()
    text = text.replace("https://contoso-prod.operations.dynamics.com/data", fo.url)
    text = text.replace("https://contoso-prod.operations.dynamics.com/.default", fo.scope)
    text = text.replace("https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47", fo.aad.authority)
    text = re.sub(r'(?m)^    - internal: WH2/Stock\n      code: "21"\n      attrs: .*\n', "", text)
    return text.replace("internal: WH/Stock", f"internal: {stock}")


@pytest.fixture(scope="module")
def world(odoo_server, admin, setup, bridge, bridge_api_key, tmp_path_factory):
    settle(bridge)  # earlier tests' outbox rows are not this bridge's business
    stock = srv.call(admin, "stock.location", "read", [setup["stock_id"]], ["complete_name"])[0]["complete_name"]
    tmp = tmp_path_factory.mktemp("erps")
    ns, aad = FakeNetSuite(), FakeAzureAd(tmp)
    fo = FakeFinOps(aad)
    ns.__enter__(), aad.__enter__(), fo.__enter__()
    ns.put_stock("999", "1", 0)  # location "1" exists in NetSuite
    for sku in SKUS:
        ns.put_stock(NS_IDS[sku], "1", 0)
        fo.stock(sku.upper(), "11", 0)
    config = write_config(tmp, odoo_server.port, odoo_server.db, stock, ns, fo)
    secrets = dict(zip(("netsuite_account", "netsuite_consumer_key", "netsuite_consumer_secret",
                        "netsuite_token_id", "netsuite_token_secret"), ns.creds))
    env = {**{f"ERP_BRIDGE_SECRETS__{k.upper()}": v for k, v in secrets.items()},
           "ERP_BRIDGE_SECRETS__D365_CLIENT_ID": "bridge-app", "ERP_BRIDGE_SECRETS__D365_CLIENT_SECRET": "app-secret-123",
           "REQUESTS_CA_BUNDLE": str(aad.ca_file)}
    state = {"ns": ns, "fo": fo, "admin": admin, "config": config, "env": env, "api_key": bridge_api_key,
             "bridge": b.start(config, BRIDGE[0], bridge_api_key, env)}
    yield state
    state["bridge"].stop()
    keep = tmp_path_factory.getbasetemp().parent / "erp-bridge-e2e-erps.log"
    keep.write_text(state["bridge"].log_text())
    for fake in (fo, aad, ns):
        fake.__exit__(None, None, None)


def odoo_move(make_product, sku: str, qty: int) -> None:
    """An applied inventory in Odoo: one done move into stock, journalled by the module."""
    make_product(qty, sku=sku)


def ns_adjustments(world, sku: str) -> list[Decimal]:
    """NetSuite's adjustment quantities for ``sku`` (one per record: an upsert replay replaces)."""
    return [q for adj in world["ns"].adjustments.values() for item, _, q in adj.lines if item == NS_IDS[sku]]


def fo_lines(world, sku: str) -> list[Decimal]:
    return [Decimal(str(line["InventoryQuantity"])) for line in world["fo"].lines() if line["ItemNumber"] == sku.upper()]


def arrived_once(world, sku: str, qty: int, timeout_s: float = 60) -> None:
    b.wait_until(lambda: ns_adjustments(world, sku) and fo_lines(world, sku), timeout_s,
                 f"{sku} to reach NetSuite and D365", detail=lambda: (ns_adjustments(world, sku), fo_lines(world, sku),
                                                                      world["bridge"].log_text()[-1500:]))
    time.sleep(1.5)  # give a second delivery every chance to show before asserting it did not happen
    assert ns_adjustments(world, sku) == [Decimal(qty)]
    assert fo_lines(world, sku) == [Decimal(qty)]


def test_an_odoo_move_becomes_one_adjustment_and_one_journal_line(world, make_product):
    odoo_move(make_product, "ERP-1", 7)
    arrived_once(world, "ERP-1", 7)
    assert world["ns"].invalid == []  # every envelope was valid against the XSDs
    assert world["ns"].on_hand(NS_IDS["ERP-1"], "1") == 7


def test_a_lost_answer_is_not_posted_twice(world, make_product):
    """Both ERPs store the document, then the connection dies before the answer: the bridge does
    not know, retries, and must find what it wrote (NetSuite: upsert by externalId; F&O: the
    journal's Description searched before posting again)."""
    world["ns"].fail_next(SoapFault(operation="upsertList", drop="after_commit"))
    world["fo"].served.fail_next(HttpFault(drop="after_commit", path="$batch"))
    odoo_move(make_product, "ERP-2", 4)
    arrived_once(world, "ERP-2", 4)
    assert len([a for a in world["ns"].adjustments.values() if NS_IDS["ERP-2"] in {i for i, _, _ in a.lines}]) == 1


def test_a_throttled_burst_arrives_once_each(world, make_product):
    """NetSuite refuses with its concurrency fault, F&O with 429 + Retry-After, while ten moves
    arrive at once: each ends in the ERP exactly once."""
    busy = SoapFault(fault_name="exceededConcurrentRequestLimitFault", code="WS_CONCUR_SESSION_DISALLWD",
                     message="Only one request may be made against a session at a time", operation="upsertList")
    world["ns"].fail_next(*[busy] * 4)
    throttled = HttpFault(429, {"Retry-After": "1", "Content-Type": "application/json"},
                          b'{"error": {"code": "", "message": "Too many requests"}}', path="$batch")
    world["fo"].served.fail_next(*[throttled] * 4)
    burst = SKUS[2:12]
    for n, sku in enumerate(burst):
        odoo_move(make_product, sku, n + 1)
    for n, sku in enumerate(burst):
        arrived_once(world, sku, n + 1, timeout_s=90)
    log = world["bridge"].log_text()
    assert "HTTP 429" in log and "WS_CONCUR_SESSION_DISALLWD" in log  # both throttles were met and retried


def test_kill_9_with_both_requests_in_flight_loses_and_doubles_nothing(world, make_product):
    """The bridge dies (SIGKILL) while both ERPs hold its requests; they commit afterwards. The
    restarted bridge re-reads Odoo's unacknowledged journal rows and its own queue: one each."""
    world["ns"].latency_s = 4.0
    world["fo"].served.fail_next(HttpFault(hang_s=4.0, drop="after_commit", path="$batch"))
    sent = len(world["ns"].operations)
    odoo_move(make_product, "ERP-13", 3)
    b.wait_until(lambda: len(world["ns"].operations) > sent or world["ns"].in_flight, 30, "the upsert in flight")
    time.sleep(0.5)  # the F&O $batch too, most likely (if not, it meets the hang after the restart)
    os.kill(world["bridge"].proc.pid, signal.SIGKILL)
    world["bridge"].proc.wait(10)
    world["ns"].latency_s = 0.0
    time.sleep(4.5)  # both ERPs commit what they held
    world["bridge"] = b.start(world["config"], BRIDGE[0], world["api_key"], world["env"])
    arrived_once(world, "ERP-13", 3, timeout_s=90)
