"""NetSuite over the REST record API (docs/connectors/netsuite-rest.yaml): a replayed upsert must not
append the ``inventory`` sublist again (``replace=inventory``), external ids must be what NetSuite
accepts, TBA signs every request, and a mapping that would double quantities is refused at start."""
from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from pathlib import Path

import pytest

from erp_bridge.connectors.netsuite import NetSuiteRestConnector, describe, from_context, protocol
from erp_bridge.connectors.runtime.context import ConnectorContext
from erp_bridge.domain import Delivered
from erp_bridge.errors import ConfigError, RetryableError
from erp_bridge.mapping.schema import SystemMapping
from erp_bridge.yamlpos import load_yaml_file
from tests.fakes.netsuite import move
from tests.fakes.netsuite_rest import FakeNetSuiteRest

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "netsuite-rest.yaml"
ROLES = ("account", "consumer_key", "consumer_secret", "token_id", "token_secret")


def rest_mapping(url: str, drop_replace: bool = False, **changes) -> SystemMapping:
    data = load_yaml_file(EXAMPLE).data
    data["connection"].update(base_url=url, timeout_s=2)
    if drop_replace:
        del data["requests"]["adjustment"]["query"]
    data.update(changes)
    return SystemMapping.model_validate(data)


def connector(fake: FakeNetSuiteRest, tmp_path, mapping: SystemMapping | None = None):
    mapping = mapping or rest_mapping(fake.url)
    values = dict(zip(ROLES, (fake.account, *fake.secrets)))
    secrets = {mapping.connection.auth.secrets[role]: value for role, value in values.items()}
    return from_context(ConnectorContext(mapping, secrets.__getitem__, {}, f"sqlite:///{tmp_path}/q.sqlite3"))


@pytest.fixture
def rest():
    with FakeNetSuiteRest() as fake:
        yield fake


def test_the_base_url_shape_selects_the_protocol(rest, tmp_path):
    assert protocol(rest_mapping(rest.url)) == "rest"
    assert isinstance(connector(rest, tmp_path), NetSuiteRestConnector)
    with pytest.raises(ConfigError, match="must be the SOAP endpoint .* or the REST record API"):
        protocol(rest_mapping("https://1234567.suitetalk.api.netsuite.com/services/rest/query/v1"))


def test_a_replayed_upsert_replaces_the_lines_instead_of_doubling_them(rest, tmp_path):
    conn = connector(rest, tmp_path)
    for _ in range(3):  # first delivery, a retry after a lost answer, a restart
        assert conn.post_moves([move("42", quantity=2)]) == [Delivered("upserted (HTTP 204)")]
    assert list(rest.records) == ["odoo-3Amove-3A42"]
    assert rest.quantity("odoo-3Amove-3A42") == Decimal(-2)
    assert all("?replace=inventory" in raw for _, raw, _ in rest.requests)
    assert rest.records["odoo-3Amove-3A42"]["externalId"] == "odoo-3Amove-3A42"


def test_the_double_shows_what_the_bug_was(rest):
    rest._upsert("x", {"inventory": {"items": [{"adjustQtyBy": -2}]}}, set())
    rest._upsert("x", {"inventory": {"items": [{"adjustQtyBy": -2}]}}, set())  # replay without replace=
    assert rest.quantity("x") == Decimal(-4)


def test_a_sublist_without_replace_is_refused_at_start(rest, tmp_path):
    with pytest.raises(ConfigError, match=r"body.inventory is a sublist: add query: \{replace: inventory\}"):
        connector(rest, tmp_path, rest_mapping(rest.url, drop_replace=True))


def test_rest_upserts_only_by_put_on_an_external_id(rest, tmp_path):
    data = load_yaml_file(EXAMPLE).data
    data["connection"]["base_url"] = rest.url
    data["requests"]["adjustment"].update(method="POST", path="/inventoryadjustment")
    with pytest.raises(ConfigError, match=r"method: PUT and a path ending in /eid:\{key\}"):
        connector(rest, tmp_path, SystemMapping.model_validate(data))


def test_rest_is_a_mirror_only(rest, tmp_path):
    with pytest.raises(ConfigError, match="as a system of record NetSuite is read through SOAP"):
        connector(rest, tmp_path, rest_mapping(rest.url, role="system_of_record"))


def test_wrong_token_is_a_configuration_error_without_secrets(rest, tmp_path):
    conn = connector(rest, tmp_path)
    real = rest.secrets
    rest.secrets = (real[0], "zz" * 32, real[2], real[3])
    [result] = conn.post_moves([move("1")])
    assert "refused the credentials (HTTP 401" in str(result)
    assert not any(secret in str(result) for secret in (*real, *rest.secrets))


def test_concurrency_429_is_retryable(rest, tmp_path):
    rest.concurrency = 0
    [result] = connector(rest, tmp_path).post_moves([move("1")])
    assert isinstance(result, RetryableError) and "CONCURRENCY_LIMIT_EXCEEDED" in str(result)


def test_preview_shows_the_request_the_connector_sends(rest):
    from datetime import datetime

    from tests.fakes.netsuite import move as a_move

    text = describe(rest_mapping(rest.url), {}, [a_move("42")], now=datetime(2026, 11, 30, tzinfo=UTC))
    assert f"PUT {rest.url}/inventoryadjustment/eid:odoo-3Amove-3A42?replace=inventory" in text
    assert '"externalId": "odoo-3Amove-3A42"' in text
