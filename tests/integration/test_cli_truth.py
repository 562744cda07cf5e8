"""Issue 9, "what the tools say is true": ``config check`` builds exactly what ``serve`` builds, the
mapping commands fail loudly on a missing folder or an unmappable event, and the dead-letter
commands print what is stored without letting it drive the terminal."""
from __future__ import annotations

import json
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from erp_bridge.queue import open_queue
from erp_bridge.queue.base import NewEntry, RetryPolicy
from tests.integration.test_cli import REPO, SECRETS, free_port, run

GOLDEN = REPO / "tests" / "unit" / "mapping" / "golden"
SAP = {"ERP_BRIDGE_SECRETS__SAP_B1_USER": "sap-user", "ERP_BRIDGE_SECRETS__SAP_B1_PASSWORD": "sap-pw-1"}


def setup(tmp_path, *names: str, edit=None) -> Path:
    maps = tmp_path / "mappings"
    maps.mkdir()
    for name in names:
        text = (REPO / "mappings" / name).read_text()
        (maps / name).write_text(edit(name, text) if edit else text)
    shutil.copy(REPO / "mappings" / "shopify_items.csv", maps)
    config = tmp_path / "bridge.yaml"
    config.write_text("mappings_dir: mappings\ndata_dir: data\n")
    return config


def both(config: Path, env: dict) -> tuple:
    """``config check`` and ``serve`` on the same files: they must agree."""
    check = run(["--config", str(config), "config", "check"], env=env)
    serve = run(["--config", str(config), "serve", "--port", str(free_port())], env=env, timeout=20) \
        if check.returncode else None
    return check, serve


def test_an_unknown_connector_kind_is_refused_by_check_as_by_serve(tmp_path):
    config = setup(tmp_path, "netsuite.yaml", "odoo.yaml")
    env = {f"ERP_BRIDGE_SECRETS__{n.upper()}": "x-1" for n in (
        "netsuite_account", "netsuite_consumer_key", "netsuite_consumer_secret", "netsuite_token_id",
        "netsuite_token_secret", "odoo_user", "odoo_password", "odoo_nudge_secret")}
    check, serve = both(config, env)
    assert check.returncode == serve.returncode == 2
    expected = re.compile(r"mappings/netsuite.yaml:\d+:\d+ connector: system netsuite: no connector 'netsuite'")
    assert expected.search(check.stderr) and expected.search(serve.stderr), check.stderr


def test_sap_without_its_company_database_is_refused_with_file_line_key(tmp_path):
    def drop_database(name, text):
        return text.replace("  database: SBODEMOUS        # CompanyDB of the Login body\n", "")
    config = setup(tmp_path, "sap_b1.yaml", "odoo.yaml", edit=drop_database)
    env = {**SAP, **{k: v for k, v in SECRETS.items() if "ODOO" in k}}
    check, serve = both(config, env)
    assert check.returncode == serve.returncode == 2
    expected = re.compile(r"mappings/sap_b1.yaml:\d+:\d+ connection(\.database)?: sap_b1: connection.database must name the SAP CompanyDB")
    assert expected.search(check.stderr) and expected.search(serve.stderr), check.stderr


def test_a_channel_whose_sales_cannot_reach_a_system_of_record_does_not_start(tmp_path):
    """Only Shopify's secrets set: its sales would answer 500 and be lost. Refuse, and say why."""
    config = setup(tmp_path, "shopify.yaml", "odoo.yaml")
    env = {k: v for k, v in SECRETS.items() if "SHOPIFY" in k}
    check, serve = both(config, env)
    assert check.returncode == serve.returncode == 2
    for out in (check.stderr, serve.stderr):
        assert "system shopify takes sales for location 'WH/Stock', but no active system of record" in out
        assert "odoo is INACTIVE: missing secret(s): odoo_user" in out
    for secret in SECRETS.values():
        assert secret not in check.stdout + check.stderr + serve.stdout + serve.stderr


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_mappings_check_with_a_missing_or_empty_mappings_dir_fails_and_names_it(tmp_path, make, monkeypatch):
    config = tmp_path / "bridge.yaml"
    config.write_text("mappings_dir: maps\n")
    if make == "empty":
        (tmp_path / "maps").mkdir()
    monkeypatch.chdir(REPO)  # where ./mappings exists: it must not be checked instead
    for args in (["mappings", "check"], ["config", "check"]):
        result = run(["--config", str(config), *args])
        assert result.returncode == 2, (args, result.stdout)
        assert str(tmp_path / "maps") in result.stderr


def test_preview_of_an_unmapped_sku_prints_the_reason_not_a_traceback(tmp_path):
    config = setup(tmp_path, "sap_b1.yaml", "odoo.yaml")
    event = json.loads((GOLDEN / "sap_b1-goods_issue.event.json").read_text())
    (tmp_path / "event.json").write_text(json.dumps({**event, "location": "Nowhere/Stock"}))
    result = run(["--config", str(config), "mappings", "preview", "sap_b1", "--event", str(tmp_path / "event.json")])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "location 'Nowhere/Stock' is not mapped in sap_b1" in result.stderr


def test_dlq_list_escapes_control_characters_and_discard_records_a_reason(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    queue = open_queue(f"sqlite:///{data}/queue.sqlite3", RetryPolicy(max_attempts=1))
    entry = queue.enqueue([NewEntry(target="odoo", kind="decrement", item="SKU\x1b[2J\x07\u202e", location="WH",
                                    idempotency_key="shopify:1:1", payload={}, quantity=Decimal(-1))])[0]
    queue.lease("w", 1, 30)
    queue.fail(entry.id, "w", "refused \x1b]0;pwned\x07", retryable=False)
    queue.close()
    config = tmp_path / "bridge.yaml"
    config.write_text(f"data_dir: data\nmappings_dir: {REPO / 'mappings'}\n")
    listed = run(["--config", str(config), "dlq", "list"])
    assert "\x1b" not in listed.stdout and "\x07" not in listed.stdout and "\u202e" not in listed.stdout
    assert "SKU\\x1b[2J\\x07\\u202e@WH" in listed.stdout and "refused \\x1b]0;pwned\\x07" in listed.stdout
    no_reason = run(["--config", str(config), "dlq", "discard", str(entry.id)])
    assert no_reason.returncode == 2
    done = run(["--config", str(config), "dlq", "discard", str(entry.id), "--reason", "cancelled by phone"])
    assert done.returncode == 0 and "discarded 1 of 1" in done.stdout
    assert run(["--config", str(config), "dlq", "list"]).stdout.strip() == "no dead letters"
    shown = run(["--config", str(config), "dlq", "show", str(entry.id)])
    assert '"state": "discarded"' in shown.stdout and "cancelled by phone" in shown.stdout
