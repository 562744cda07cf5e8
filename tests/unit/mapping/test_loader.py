"""The loader, the example files, the published schema and the CLI hooks."""
from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

import pytest

from erp_bridge.errors import MappingError
from erp_bridge.mapping import cli_support
from erp_bridge.mapping.loader import load_mapping_files, load_mappings
from erp_bridge.mapping.lookups import load_lookup
from erp_bridge.mapping.preview import preview
from erp_bridge.mapping.schema import SystemMapping
from erp_bridge.yamlpos import load_yaml_file

from .conftest import HERE, MAPPINGS, NOW, fixed_ids

EXAMPLES = sorted(MAPPINGS.glob("*.yaml"))
EXAMPLE_SECRETS = {"sap_b1_user", "sap_b1_password", "odoo_user", "odoo_password", "odoo_nudge_secret", "shopify_token",
                   "netsuite_account", "netsuite_consumer_key", "netsuite_consumer_secret", "netsuite_token_id",
                   "netsuite_token_secret", "d365_client_id", "d365_client_secret", "zoho_client_id",
                   "zoho_client_secret", "zoho_refresh_token", "digital_river_pull_token", "square_token",
                   "square_webhook_signature_key", "woocommerce_consumer_key", "woocommerce_consumer_secret",
                   "bigcommerce_access_token", "ordergroove_public_id", "ordergroove_sig_field",
                   "ordergroove_hash_key", "sfcc_client_id", "sfcc_client_secret",
                   "prestashop_webservice_key", "lightspeed_x_token", "clover_api_token",
                   "lightspeed_client_id", "lightspeed_client_secret", "lightspeed_refresh_token", "cin7_account_id",
                   "cin7_application_key", "amazon_lwa_client_id", "amazon_lwa_client_secret",
                   "amazon_refresh_token", "magento_token"}


def test_examples_load_with_their_roles(example_set):
    assert set(example_set.systems) == {"sap_b1", "netsuite", "dynamics365", "dynamics365_iv", "zoho_inventory",
                                        "odoo", "shopify", "square", "woocommerce", "bigcommerce", "yahoo_store",
                                        "digital_river", "ordergroove", "sfcc", "prestashop", "lightspeed_x", "clover",
                                        "lightspeed_r", "cin7_core", "amazon_sp", "magento"}
    assert example_set.system_of_record("WH2/Stock").system == "odoo"
    assert [m.system for m in example_set.channels()] == ["amazon_sp", "bigcommerce", "cin7_core", "clover", "lightspeed_r",
                                                          "lightspeed_x", "magento", "ordergroove", "prestashop", "sfcc",
                                                          "shopify", "square", "woocommerce"]
    assert {m.system for m in example_set.mirrors()} == {"sap_b1", "netsuite", "dynamics365", "dynamics365_iv",
                                                          "zoho_inventory"}
    assert example_set.systems["shopify"].internal_location("gid://shopify/Location/61234567") == "WH/Stock"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_starts_with_the_schema_modeline(path):
    assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=./schema.json"


def test_published_schema_is_current():
    on_disk = json.loads((MAPPINGS / "schema.json").read_text())
    assert on_disk == cli_support.schema_document(), "run `erp-bridge mappings schema` and commit mappings/schema.json"


def test_write_schema_writes_what_editors_read(tmp_path):
    cli_support.write_schema(tmp_path / "schema.json")
    schema = json.loads((tmp_path / "schema.json").read_text())
    assert schema["additionalProperties"] is False and "version" in schema["required"]
    assert schema["$defs"]["Node"]["properties"]["transform"]["items"]["enum"][:2] == ["upper", "lower"]


def test_secrets_all_configured_pass_and_each_missing_one_is_named():
    load_mappings(MAPPINGS, secret_names=EXAMPLE_SECRETS)
    with pytest.raises(MappingError) as caught:
        load_mappings(MAPPINGS, secret_names=EXAMPLE_SECRETS - {"shopify_token", "odoo_password"})
    assert [str(p) for p in caught.value.problems] == [
        "mappings/odoo.yaml:18:17 connection.auth.secrets.password: secret 'odoo_password' is not configured: "
        "set ERP_BRIDGE_SECRETS__ODOO_PASSWORD or put a file named odoo_password in $CREDENTIALS_DIRECTORY",
        "mappings/shopify.yaml:16:14 connection.auth.secrets.token: secret 'shopify_token' is not configured: "
        "set ERP_BRIDGE_SECRETS__SHOPIFY_TOKEN or put a file named shopify_token in $CREDENTIALS_DIRECTORY",
    ]


def test_errors_of_all_files_come_at_once(tmp_path):
    directory = tmp_path / "mappings"
    directory.mkdir()
    for name in ("unquoted_location_code", "unknown_connector"):
        shutil.copy(HERE / "invalid" / f"{name}.yaml", directory)
    with pytest.raises(MappingError) as caught:
        load_mappings(directory)
    assert [p.file for p in caught.value.problems] == ["mappings/unknown_connector.yaml",
                                                       "mappings/unquoted_location_code.yaml"]


def test_loading_never_mutates_files_or_data(tmp_path):
    directory = shutil.copytree(MAPPINGS, tmp_path / "mappings")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()}
    load_mappings(directory)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()} == before
    data = load_yaml_file(directory / "shopify.yaml").data
    snapshot = copy.deepcopy(data)
    SystemMapping.model_validate(data)
    assert data == snapshot


def test_preview_never_shows_a_secret_value(monkeypatch, tmp_path):
    secret = "shpat_d5e1c0ffee0123456789"
    monkeypatch.setenv("ERP_BRIDGE_SECRETS__SHOPIFY_TOKEN", secret)
    (tmp_path / "shopify_token").write_text(secret)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    text = preview("shopify", HERE / "golden" / "shopify-availability.event.json", MAPPINGS, now=NOW,
                   new_id=fixed_ids())
    assert "X-Shopify-Access-Token: ***" in text
    assert secret not in text and "{secret:" not in text


def test_requests_carry_secret_names_as_placeholders(example_set):
    from decimal import Decimal

    from erp_bridge.domain import Figure
    from erp_bridge.mapping.engine import build_requests
    request = build_requests(Figure("007", "WH/Stock", Decimal(4)), example_set.systems["shopify"],
                             example_set.lookups, now=NOW, new_id=fixed_ids())[0]
    assert request.headers["X-Shopify-Access-Token"] == "{secret:shopify_token}"


def test_preview_of_an_unknown_system_names_the_known_ones():
    with pytest.raises(MappingError, match=r"no mapping for system 'sap' \(known: amazon_sp, bigcommerce, .*, netsuite, odoo, "):
        preview("sap", HERE / "golden" / "odoo-decrement.event.json", MAPPINGS)


def test_preview_locates_a_bad_event(tmp_path):
    event = tmp_path / "bad.json"
    event.write_text('{"kind": "decrement", "channel": "shopify", "order": "1", "line": "1",\n'
                     ' "item": "chair-blue", "location": "WH/Stock", "quantity": "-2"}\n')
    with pytest.raises(MappingError) as caught:
        preview("odoo", event, MAPPINGS)
    assert [str(p) for p in caught.value.problems] == [
        f"{event}:2:60 quantity: input should be greater than 0"]


def test_check_directory_and_files():
    lines = cli_support.check([MAPPINGS])
    assert lines[-1] == f"ok: {len(list(MAPPINGS.glob('*.yaml')))} mapping file(s)"
    assert "mappings/shopify.yaml: shopify (shopify; channel; 2 location(s), 1 request(s))" in lines
    assert cli_support.check([MAPPINGS / "shopify.yaml"])[-1] == "ok: 1 mapping file(s)"


def test_check_raises_with_every_problem(tmp_path):
    bad = shutil.copy(HERE / "invalid" / "unknown_role.yaml", tmp_path / "x.yaml")
    with pytest.raises(MappingError) as caught:
        cli_support.check([Path(bad), MAPPINGS])
    assert [p.message for p in caught.value.problems] == ["input should be 'system_of_record', 'mirror', 'channel' or 'pull_client'"]


def test_a_single_file_check_skips_cross_file_coverage():
    loaded = load_mapping_files([MAPPINGS / "sap_b1.yaml"])
    assert list(loaded.systems) == ["sap_b1"]


def test_lookup_of_100k_rows_loads_under_a_second(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("sku,code\n" + "".join(f"{i:07d},{9000000 + i}\n" for i in range(100_000)))
    start = time.perf_counter()
    table, problems = load_lookup(path, "items.csv", "sku", "code")
    elapsed = time.perf_counter() - start
    assert problems == [] and len(table.codes) == 100_000
    assert table.codes["0000007"] == "9000007" and table.sku_of("9000007") == "0000007"
    assert elapsed < 1.0, f"{elapsed:.3f}s"
