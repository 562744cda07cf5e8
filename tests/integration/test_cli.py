"""The `erp-bridge` command as an operator runs it (a real subprocess, real files)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from erp_bridge.queue import open_queue
from erp_bridge.queue.base import NewEntry, RetryPolicy

ERP_BRIDGE = str(Path(sys.executable).with_name("erp-bridge"))
REPO = Path(__file__).resolve().parents[2]
SECRETS = {"ERP_BRIDGE_SECRETS__SHOPIFY_TOKEN": "shpat_live_9f8e7d6c5b4a",
           "ERP_BRIDGE_SECRETS__SHOPIFY_WEBHOOK_SECRET": "whsec_0a1b2c3d4e5f",
           "ERP_BRIDGE_ADMIN_TOKEN": "adm_tok_77aa88bb99cc",
           # Shopify's sales need an active system of record (issue 9): Odoo's secrets
           "ERP_BRIDGE_SECRETS__ODOO_USER": "odoo-user-5566",
           "ERP_BRIDGE_SECRETS__ODOO_PASSWORD": "odoo_pw_8899aa",
           "ERP_BRIDGE_SECRETS__ODOO_NUDGE_SECRET": "nudge_sec_1122"}
PG_URL = {"ERP_BRIDGE_QUEUE__URL": "postgresql://bridge:pg_pw_31415926@db.internal/bridge"}
CREDENTIAL = ("secret_sap_b1_password", "sap-pw-271828")


def run(args: list[str], env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_BRIDGE_")}
    return subprocess.run([ERP_BRIDGE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**full_env, **(env or {})})


def local_mappings(tmp_path: Path) -> Path:
    """The example mappings with every system's URL on a closed local port: a service started
    here with the Odoo secrets set polls Odoo, and must not reach for odoo.example.com."""
    import re
    import shutil

    target = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", target)
    for path in target.glob("*.yaml"):
        text = re.sub(r"base_url: https?://\S+?(/admin/api/\S+)?(\s)", r"base_url: http://127.0.0.1:9\1\2",
                      path.read_text())
        path.write_text(re.sub(r"token_url: https?://\S+", "token_url: http://127.0.0.1:9/token", text))
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_malformed_config_refuses_to_start_and_names_file_line_key(tmp_path):
    bad = tmp_path / "bridge.yaml"
    port = free_port()
    bad.write_text(f"http:\n  port: {port}\nworkers:\n  cuont: 2\nretry:\n  jitter: lots\n")
    result = run(["--config", str(bad), "serve"])
    assert result.returncode == 2
    assert f"{bad}:4:3 workers.cuont: unknown key (check the spelling)" in result.stderr
    assert f"{bad}:6:11 retry.jitter: expected a number, got string 'lots'" in result.stderr
    assert "nothing was started" in result.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)


def test_a_bad_value_in_the_file_is_overridden_by_the_command_line_only_when_given(tmp_path):
    bad = tmp_path / "bridge.yaml"
    bad.write_text("http:\n  port: eighty\n")
    result = run(["--config", str(bad), "config", "check"])
    assert result.returncode == 2
    assert f"{bad}:2:9 http.port: expected an integer, got string 'eighty'" in result.stderr


def test_broken_mapping_refuses_to_start(tmp_path):
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "shop.yaml").write_text("version: 1\nsystem: shop\nconnector: http_json\n")
    (tmp_path / "bridge.yaml").write_text("mappings_dir: mappings\ndata_dir: data\n")
    result = run(["--config", str(tmp_path / "bridge.yaml"), "serve", "--port", str(free_port())])
    assert result.returncode == 2
    assert "mappings/shop.yaml:1:1 connection: required key is missing" in result.stderr


def test_config_check_never_prints_a_secret(tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / CREDENTIAL[0]).write_text(CREDENTIAL[1])
    config = tmp_path / "bridge.yaml"
    config.write_text(f"mappings_dir: {REPO / 'mappings'}\ndata_dir: {tmp_path / 'data'}\nlog_level: DEBUG\n")
    result = run(["--config", str(config), "config", "check"], env={**SECRETS, "CREDENTIALS_DIRECTORY": str(creds)})
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout[:result.stdout.index("\nmapping ")])
    assert printed["admin_token"] == "***" and printed["secrets"]["shopify_token"] == "***"
    assert printed["secrets"]["sap_b1_password"] == "***"
    assert "configuration is valid" in result.stdout
    assert "mapping shopify (mappings/shopify.yaml): shopify, channel\n" in result.stdout
    assert not list((tmp_path / "data").glob("*")) if (tmp_path / "data").exists() else True  # no files left
    # a PostgreSQL queue url is accepted (checked for form, not dialled) and shown without its password
    pg = run(["--config", str(config), "config", "check"], env={**SECRETS, **PG_URL})
    assert pg.returncode == 0 and "configuration is valid" in pg.stdout, pg.stderr
    assert "postgresql://bridge:***@db.internal/bridge" in pg.stdout
    for secret in [*SECRETS.values(), CREDENTIAL[1], "pg_pw_31415926"]:
        for out in (result, pg):
            assert secret not in out.stdout and secret not in out.stderr


def test_serve_logs_and_answers_without_leaking_secrets(tmp_path):
    port = free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(f"mappings_dir: {local_mappings(tmp_path)}\ndata_dir: {tmp_path / 'data'}\nlog_level: DEBUG\n"
                      f"http: {{port: {port}}}\n")
    env = dict(SECRETS)
    proc = subprocess.Popen([ERP_BRIDGE, "--config", str(config), "serve"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **env})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = requests.get(f"{base}/readyz", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "the service did not start"
                time.sleep(0.2)
        assert ready.status_code == 200
        admin = requests.get(f"{base}/admin/status", headers={"Authorization": "Bearer " + SECRETS["ERP_BRIDGE_ADMIN_TOKEN"]}, timeout=5)
        assert admin.status_code == 200
        forged = requests.post(f"{base}/webhooks/shopify", data=b'{"id": 1}', timeout=5,
                               headers={"X-Shopify-Hmac-Sha256": "bm9wZQ==", "X-Shopify-Topic": "orders/create"})
        assert forged.status_code == 401
        texts = [ready.text, admin.text, forged.text]
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    # uvicorn re-raises SIGTERM after its graceful shutdown; systemd counts that as a clean stop
    assert proc.returncode in (0, -15)
    assert '"message": "workers stopped"' in output
    assert '"message": "workers started"' in output and "webhook for shopify refused" in output
    for secret in SECRETS.values():
        assert all(secret not in text for text in [output, *texts])


def dead_entry(data_dir: Path) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    queue = open_queue(f"sqlite:///{data_dir}/queue.sqlite3", RetryPolicy(max_attempts=1))
    entry = queue.enqueue([NewEntry(target="sap_b1", kind="move", item="SKU-1", location="WH/Stock",
                                    idempotency_key="sap_b1:odoo:move:7", payload={}, quantity=Decimal(-2))])[0]
    queue.lease("w", 1, 30)
    queue.fail(entry.id, "w", "SAP error -5002: Item SKU-1 not found", retryable=False)
    queue.close()
    return entry.id


def test_status_and_dead_letter_commands(tmp_path):
    entry_id = dead_entry(tmp_path / "data")
    config = tmp_path / "bridge.yaml"
    config.write_text(f"data_dir: data\nmappings_dir: {REPO / 'mappings'}\n")
    status = run(["--config", str(config), "status", "--json"])
    assert json.loads(status.stdout)["queue"] == [{"target": "sap_b1", "pending": 0, "leased": 0, "done": 0, "dead": 1,
                                                   "discarded": 0, "oldest_pending_age_s": None}]
    listed = run(["--config", str(config), "dlq", "list"])
    assert f"{entry_id}" in listed.stdout and "SAP error -5002: Item SKU-1 not found" in listed.stdout
    shown = run(["--config", str(config), "dlq", "show", str(entry_id)])
    assert '"state": "dead"' in shown.stdout and "attempt 1: dead" in shown.stdout
    replayed = run(["--config", str(config), "dlq", "replay", str(entry_id)])
    assert replayed.returncode == 0 and "replayed 1 of 1" in replayed.stdout
    again = run(["--config", str(config), "dlq", "replay", str(entry_id)])
    assert again.returncode == 1 and "not replayed" in again.stderr
    assert json.loads(run(["--config", str(config), "status", "--json"]).stdout)["queue"][0]["pending"] == 1
