"""The HTTP service: health, readiness, metrics, and the admin API behind its bearer token."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from erp_bridge.http.app import create_app
from erp_bridge.queue.base import NewEntry
from erp_bridge.runtime import build_runtime
from erp_bridge.settings import load_settings

TOKEN = "adm-3141-5926"


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    for key in ("ERP_BRIDGE_ADMIN_TOKEN", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "shop.yaml").write_text(
        "version: 1\nsystem: shop\nconnector: http_json\nrole: system_of_record\n"
        "connection: {base_url: 'http://127.0.0.1:9', auth: {kind: none}}\n"
        "locations: {map: [{internal: WH, code: WH}]}\n")
    config = tmp_path / "bridge.yaml"
    config.write_text("data_dir: data\nmappings_dir: mappings\nworkers: {count: 1, poll_interval_s: 0.05}\n")
    return lambda **overrides: build_runtime(load_settings(config, **overrides))


@pytest.fixture
def client(runtime):
    with TestClient(create_app(runtime(admin_token=TOKEN))) as c:
        yield c


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def dead(client) -> int:
    queue = client.app.state.runtime.queue
    entry = queue.enqueue([NewEntry(target="sap_b1", kind="move", item="A", location="WH", idempotency_key="k1",
                                    payload={}, quantity=Decimal(-1))])[0]
    queue.lease("w", 1, 30)
    queue.fail(entry.id, "w", "SAP error -5002: Item A not found", retryable=False)
    return entry.id


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["queue"] == {"ok": True}


def test_not_ready_when_the_workers_are_not_running(runtime):
    app = create_app(runtime(), manage_lifecycle=False)
    with TestClient(app) as c:
        answer = c.get("/readyz")
    assert answer.status_code == 503 and answer.json()["checks"]["workers"] == {"ok": False}


def test_metrics_expose_queue_depth_per_state_and_target(client):
    dead(client)
    text = client.get("/metrics").text
    assert 'erp_bridge_queue_depth{state="dead",target="sap_b1"} 1.0' in text
    assert "erp_bridge_deliveries_total" in text or "erp_bridge_delivery_duration_seconds" in text


@pytest.mark.parametrize("headers, status", [
    pytest.param({}, 401, id="no-token"),
    pytest.param(auth("wrong"), 401, id="wrong-token"),
    pytest.param({"Authorization": TOKEN}, 401, id="not-bearer"),
    pytest.param(auth(), 200, id="right-token"),
])
def test_admin_needs_the_bearer_token(client, headers, status):
    assert client.get("/admin/status", headers=headers).status_code == status


def test_admin_disabled_without_a_token_says_how_to_enable_it(runtime):
    with TestClient(create_app(runtime())) as c:
        answer = c.get("/admin/status", headers=auth())
    assert answer.status_code == 503 and "ERP_BRIDGE_ADMIN_TOKEN" in answer.json()["detail"]


def test_dead_letters_list_show_and_replay(client):
    entry_id = dead(client)
    listed = client.get("/admin/dead-letters", headers=auth()).json()["entries"]
    assert [(e["id"], e["state"], e["last_error"]) for e in listed] == [
        (entry_id, "dead", "SAP error -5002: Item A not found")]
    shown = client.get(f"/admin/entries/{entry_id}", headers=auth()).json()
    assert [a["outcome"] for a in shown["attempts"]] == ["dead"]
    assert client.post(f"/admin/dead-letters/{entry_id}/replay", headers=auth()).json()["entry"]["state"] == "pending"
    assert client.post(f"/admin/dead-letters/{entry_id}/replay", headers=auth()).status_code == 409
    assert client.post("/admin/dead-letters/999999/replay", headers=auth()).status_code == 404
    assert client.get("/admin/entries/999999", headers=auth()).status_code == 404


def test_status_lists_targets(client):
    dead(client)
    status = client.get("/admin/status", headers=auth()).json()
    assert status["targets"][0]["target"] == "sap_b1" and status["targets"][0]["depth"]["dead"] == 1
    assert status["workers_alive"] is True


def test_webhook_for_an_unknown_system_says_why(client):
    answer = client.post("/webhooks/nope", content=b"{}")
    assert answer.status_code == 404
    assert answer.json() == {"error": "system 'nope' does not receive webhooks here: no mapping file declares it, "
                                      "or it takes no webhooks"}


def test_nudge_without_an_odoo_system(client):
    assert client.post("/odoo/nudge").status_code == 404


def test_maintenance_purges_done_entries_past_retention_and_keeps_dead_letters(runtime):
    rt = runtime(queue={"retention_days": 0.5})
    try:
        entry_id = rt.queue.enqueue([NewEntry(target="shop", kind="decrement", item="A", location="WH",
                                              idempotency_key="done-1", payload={}, quantity=Decimal(-1))])[0].id
        rt.queue.lease("w", 1, 30)
        rt.queue.ack([entry_id], "w")
        assert rt.maintain() == {"queue": 0, "ledgers": 0}  # done just now: within retention
        rt.settings.queue.retention_days = 0.0
        assert rt.maintain() == {} and rt.queue.get(entry_id) is not None  # 0 keeps everything
        rt.settings.queue.retention_days = 1e-7  # about 9 ms
        time.sleep(0.05)  # time passing, not synchronisation: the entry is now older than that
        assert rt.maintain()["queue"] == 1 and rt.queue.get(entry_id) is None
    finally:
        rt.queue.close()


def test_readyz_shows_states_and_counts_never_configuration_values(client):
    body = client.get("/readyz").text
    assert '"active":1' in body.replace(" ", "") and "shop" not in body and "127.0.0.1" not in body


def test_admin_serves_errors_stored_before_redaction_redacted(runtime):
    """Rows written by an older version may hold a secret: the admin API masks them on the way out."""
    rt = runtime(admin_token=TOKEN, secrets={"odoo_password": "pw-99-leaked"})
    with TestClient(create_app(rt)) as c:
        queue = c.app.state.runtime.queue
        entry = queue.enqueue([NewEntry(target="odoo", kind="decrement", item="A", location="WH",
                                        idempotency_key="k9", payload={}, quantity=Decimal(-1))])[0]
        queue.lease("w", 1, 30)
        queue.fail(entry.id, "w", "login refused for password pw-99-leaked", retryable=False)
        texts = [c.get("/admin/dead-letters", headers=auth()).text, c.get(f"/admin/entries/{entry.id}", headers=auth()).text]
    assert all("pw-99-leaked" not in t and "password ***" in t for t in texts)


def test_discard_needs_a_reason_and_records_it(client):
    entry_id = dead(client)
    assert client.post(f"/admin/dead-letters/{entry_id}/discard", headers=auth(), json={}).status_code == 400
    answer = client.post(f"/admin/dead-letters/{entry_id}/discard", headers=auth(), json={"reason": "counted by hand"})
    assert answer.status_code == 200 and answer.json()["entry"]["state"] == "discarded"
    assert "counted by hand" in answer.json()["entry"]["last_error"]
    assert client.post(f"/admin/dead-letters/{entry_id}/discard", headers=auth(), json={"reason": "x"}).status_code == 409
