"""The registry is the one list of connector kinds: the schema's enum derives from it, a planned
kind is refused with a message that says what to do, and factories get a typed context."""
from __future__ import annotations

from pathlib import Path

import pytest

from erp_bridge.connectors import registry
from erp_bridge.connectors.registry import Kind
from erp_bridge.errors import ConfigError
from erp_bridge.mapping.loader import load_mappings
from erp_bridge.mapping.schema import CONNECTOR_KINDS

MAPPINGS = Path(__file__).resolve().parents[3] / "mappings"


@pytest.fixture(scope="module")
def example_set():
    return load_mappings(MAPPINGS)


def test_the_schema_enum_is_the_registry():
    assert registry.kinds() == CONNECTOR_KINDS
    assert set(CONNECTOR_KINDS) >= {"odoo", "sap_b1", "zoho_inventory", "shopify", "http_json", "pull"}


def test_a_planned_kind_is_refused_with_what_to_do(example_set, monkeypatch):
    mapping = example_set.systems["zoho_inventory"]
    monkeypatch.setitem(registry.KINDS, "zoho_inventory", Kind("zoho_inventory", None, summary="Zoho (planned)"))
    with pytest.raises(ConfigError, match="connector 'zoho_inventory' is not built in this version .*leave its "
                                          "secrets unset to keep the mapping inactive"):
        registry.build(mapping, {})


def test_a_missing_secret_names_itself_and_never_a_value(example_set, tmp_path):
    mapping = example_set.systems["zoho_inventory"]
    with pytest.raises(ConfigError, match="secret 'zoho_client_secret' is not configured") as caught:
        registry.build(mapping, {"zoho_client_id": "id-1", "zoho_refresh_token": "1000.refresh-value"},
                       storage_url=f"sqlite:///{tmp_path}/q.sqlite3")
    assert "1000.refresh-value" not in str(caught.value)


def test_the_ledger_lives_in_the_queues_storage(example_set, tmp_path):
    secrets = {"zoho_client_id": "id", "zoho_client_secret": "s", "zoho_refresh_token": "r"}
    connector = registry.build(example_set.systems["zoho_inventory"], secrets, example_set.lookups,
                               storage_url=f"sqlite:///{tmp_path}/queue.sqlite3")
    try:
        assert connector.ledger.storage_url == f"sqlite:///{tmp_path}/queue.sqlite3" and connector.ledger.system == "zoho_inventory"
    finally:
        connector.close()
