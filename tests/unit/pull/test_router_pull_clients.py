"""The router fans availability out to channels only: a pull client selling the same locations
(mappings/yahoo_store.yaml, digital_river.yaml) never gets a queue entry."""
from __future__ import annotations

from decimal import Decimal

from erp_bridge.domain import Decrement
from erp_bridge.mapping.loader import load_mappings
from erp_bridge.sync.router import Router

from .harness import REPO


def test_availability_changes_go_to_channels_and_never_to_pull_clients():
    mappings = load_mappings(REPO / "mappings")
    pull_clients = {n for n, m in mappings.systems.items() if "pull_client" in m.roles}
    assert pull_clients == {"yahoo_store", "digital_river"}  # they do sell WH/Stock and WH2/Stock
    router = Router(mappings)
    for location, channels in (("WH/Stock", {"shopify", "square", "woocommerce", "bigcommerce", "ordergroove", "sfcc",
                                            "prestashop", "lightspeed_x", "clover", "lightspeed_r",
                                            "cin7_core", "amazon_sp", "magento"}),
                               ("WH2/Stock", {"shopify", "woocommerce", "bigcommerce", "ordergroove", "magento"})):
        targets = {e.target for e in router.availability("odoo", "chair-blue", location, cause="m1")}
        assert targets == channels
    sale = Decrement(channel="shopify", order="1", line="1", item="chair-blue",
                     location="gid://shopify/Location/61234567", quantity=Decimal(1))
    assert {e.target for e in router.channel_change(sale)} == {"odoo", "shopify", "square", "woocommerce", "bigcommerce",
                                                               "ordergroove", "sfcc", "prestashop", "lightspeed_x", "clover",
                                                               "lightspeed_r", "cin7_core", "amazon_sp", "magento"}
