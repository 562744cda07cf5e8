"""The bridge's Odoo connector against a real Odoo: JSON-RPC (odoorpc, user + password) on 17 and
18, JSON-2 (bearer API key, named arguments) on 19, with the same semantics on each."""
from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import SecretStr

from erp_bridge.connectors.odoo import OdooConnector
from erp_bridge.domain import Decrement, Delivered
from erp_bridge.errors import ConfigError
from erp_bridge.mapping.loader import load_mappings

from . import bridge as b
from . import server as srv
from .conftest import BRIDGE

pytestmark = pytest.mark.odoo


class Secrets:
    """What OdooConnector reads from the settings: secrets by name."""

    def __init__(self, **values):
        self.values = {k: SecretStr(v) for k, v in values.items()}

    def secret(self, name):
        return self.values[name]


def connector(tmp_path, odoo_server, stock: str, auth: str, **secrets) -> OdooConnector:
    (tmp_path / "odoo.yaml").write_text(b.ODOO.format(port=odoo_server.port, db=odoo_server.db,
                                                       stock=stock, auth=auth))
    mapping = load_mappings(tmp_path).systems["odoo"]
    return OdooConnector(mapping, Secrets(**secrets), None)


@pytest.fixture
def stock(admin, setup):
    return srv.call(admin, "stock.location", "read", [setup["stock_id"]], ["complete_name"])[0]["complete_name"]


@pytest.fixture
def native(tmp_path, odoo_server, stock, bridge_api_key):
    """The connector as this version should be configured: JSON-2 on 19, JSON-RPC before."""
    if bridge_api_key:
        return connector(tmp_path, odoo_server, stock, b.JSON2_AUTH, odoo_api_key=bridge_api_key)
    return connector(tmp_path, odoo_server, stock, b.SESSION_AUTH, odoo_user=BRIDGE[0],
                     odoo_password=BRIDGE[1])


def test_connector_applies_a_sale_once_and_reads_availability(native, odoo_server, stock, make_product):
    _product_id, sku = make_product(6)
    assert native.transport == ("json2" if srv.major() >= 19 else "jsonrpc")
    log_start = odoo_server.log_size()
    sale = Decrement(channel="shopify", order=f"{sku}-1", line="1", item=sku, location=stock,
                     quantity=Decimal(2))
    assert native.apply_stock_changes([sale]) == [Delivered("applied")]
    assert native.apply_stock_changes([sale]) == [Delivered("duplicate")]  # a replay changes nothing
    figures = native.read_availability([(sku, stock)])[(sku, stock)]
    assert (figures.on_hand, figures.reserved, figures.free) == (Decimal(6), Decimal(2), Decimal(4))
    assert any(m["sku"] == sku for m in native.fetch_markers(limit=500))
    if srv.major() >= 19:  # JSON-2: none of Odoo 19's deprecation warnings for /jsonrpc
        assert "deprecated" not in odoo_server.log_since(log_start)
    native.close()


def test_a_wrong_json2_setup_is_a_config_error_that_names_no_key(tmp_path, odoo_server, stock, setup):
    """19: a wrong (or expired, revoked) key; 17 and 18: JSON-2 configured where there is none."""
    wrong = connector(tmp_path, odoo_server, stock, b.JSON2_AUTH, odoo_api_key="not-the-key-0123")
    expected = "refused the API key" if srv.major() >= 19 else "has no JSON-2"
    with pytest.raises(ConfigError, match=expected) as info:
        wrong.fetch_markers(limit=1)
    assert "not-the-key-0123" not in str(info.value)
