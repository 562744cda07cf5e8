"""Every request the Lightspeed Retail (R-Series) connector sends, checked against the documented
fields. R-Series has no machine-readable contract (../shared/specs/lightspeed/NOTES-r-series-and-x-series.md:
"No machine-readable R-Series contract was found"), so the facts the connector relies on are quoted
from the notes and vendor-apis.md §9 (the test fails if they change), and each request is checked
against them:

- base ``https://api.lightspeedapp.com/API/V3/Account/{accountID}/``;
- stock: ``PUT /Item/{itemID}.json with ItemShops`` setting ``qoh`` (absolute, not delta) per
  ItemShop by ``itemShopID``; ``shopID 0 = all-shops summary``; read via ``GET /Item/{itemID}.json
  with relation ItemShops``;
- sales: ``GET /Sale.json (SaleLines relation)``; ``lists filter/sort on timeStamp for incremental polling``;
- rate: ``X-LS-API-Bucket-Level ("used/size")``, ``X-LS-API-Drip-Rate``.
"""
from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from pathlib import Path

import pytest

from erp_bridge.connectors.lightspeed_r import DRIP_HEADER, LEVEL_HEADER
from erp_bridge.domain import Figure
from tests.fakes.lightspeed_r import ACCOUNT, FakeLightspeedR, connector_for

NOTES = Path("../shared/specs/lightspeed/NOTES-r-series-and-x-series.md")
VENDOR_APIS = Path("../shared/reference/vendor-apis.md")
pytestmark = pytest.mark.skipif(not NOTES.exists(), reason="../shared/specs/lightspeed is not beside the repo")
QUOTES = {
    NOTES: ["Base https://api.lightspeedapp.com/API/V3/Account/{accountID}/",
            "GET /Item/{itemID}.json with\n  relation ItemShops",
            "shopID 0 = all-shops summary", "qoh is set (absolute, not delta) by PUT /Item/{itemID}.json with ItemShops",
            "lists filter/sort on timeStamp for incremental polling", "GET /Sale.json (SaleLines relation)",
            'X-LS-API-Bucket-Level ("used/size")', "X-LS-API-Drip-Rate"],
    VENDOR_APIS: ['{"ItemShops":{"ItemShop":[{"itemShopID":…,"shopID":…,"qoh":N}]}}',
                  "`X-LS-API-Bucket-Level: used/size`"],
}
ITEM = re.compile(rf"^/API/V3/Account/{ACCOUNT}/Item/(\d+)\.json$")
SALES = f"/API/V3/Account/{ACCOUNT}/Sale.json"


def test_the_notes_still_say_what_the_connector_relies_on():
    for path, quotes in QUOTES.items():
        text = path.read_text(encoding="utf-8")
        for quote in quotes:
            assert quote in text, f"{path} no longer says {quote!r}"
    assert (LEVEL_HEADER, DRIP_HEADER) == ("X-LS-API-Bucket-Level", "X-LS-API-Drip-Rate")


def test_every_request_the_connector_sends_follows_the_documented_fields(tmp_path):
    with FakeLightspeedR() as fake:
        fake.ls.stock("7", "1", 1)
        fake.ls.stock("7", "2", 1)
        fake.ls.stock("8", "1", 1)
        connector = connector_for(fake, tmp_path)
        connector.commit_poll(connector.poll_changes())
        time.sleep(1.1)
        fake.ls.sell([("7", 1), ("8", -1)])
        connector.commit_poll(connector.poll_changes())
        connector.push_availability([Figure("chair-blue", "WH/Stock", Decimal("3.9")),
                                     Figure("chair-red", "WH/Stock", Decimal("0"))])
        connector.close()
    assert fake.ls.violations == []
    for method, path, query, body in fake.ls.requests:
        if path == SALES:
            assert method == "GET" and query.get("load_relations") == ['["SaleLines"]']
            if "after" not in query:
                assert query["timeStamp"][0].startswith(">,") and query["sort"] == ["timeStamp"]
                assert query["completed"] == ["true"] and 1 <= int(query["limit"][0]) <= 100
            continue
        match = ITEM.match(path)
        assert match, f"{method} {path} is not a documented R-Series endpoint"
        if method == "GET":
            assert query.get("load_relations") == ['["ItemShops"]']
            continue
        assert method == "PUT"
        shops = body["ItemShops"]["ItemShop"]
        assert isinstance(shops, list) and shops
        for shop in shops:
            assert set(shop) == {"itemShopID", "qoh"} and isinstance(shop["qoh"], int)
            held = {s["itemShopID"]: s["shopID"] for s in fake.ls.items[match.group(1)].values()}
            assert held[shop["itemShopID"]] != "0"  # never the all-shops summary
    assert json.dumps(fake.ls.items["7"]["1"]["qoh"]) == '"3"'  # rounded down
