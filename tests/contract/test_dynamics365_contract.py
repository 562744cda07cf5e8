"""What the Dynamics 365 connectors send, captured by the doubles, checked against Microsoft's own
definitions in ../shared/specs/dynamics365 (read here, independently of the doubles):

- F&O: every property of a journal header, a journal line, an on-hand ``$select`` or ``$filter`` is an
  attribute of the CDM entity behind that entity set (``InventInventoryMovementJournalHeaderEntity``,
  ``InventInventoryMovementJournalEntryV3Entity``, ``InventWarehouseOnHandV2Entity``; ``dataAreaId`` is
  every F&O entity's company key); the ``$batch`` body is multipart/mixed with one changeset of
  ``application/http`` parts (odata.md, "Run multiple requests in a single transaction"); the
  query options are the documented ones (``$filter``, ``$select``, ``cross-company``).
- Inventory Visibility: the token exchange body has exactly the keys of the documented example; every
  change event and index query has exactly the documented keys and types; every call carries
  ``Api-Version`` and a bearer token, on a documented path (inventory-visibility-api.md).
Limits: the CDM holds the V3 line entity, while F&O's header navigates to V2 lines; the OData public
collection names (and the navigation property name) are not in the CDM files (see the docs page).
"""
from __future__ import annotations

import email.parser
import email.policy
import json
import re
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from erp_bridge.domain import Decrement
from tests.fakes.azure_ad import FakeAzureAd
from tests.fakes.d365_finops import FakeFinOps, fo_connector, fo_mapping
from tests.fakes.d365_iv import FakeInventoryVisibility, iv_connector, iv_mapping
from tests.fakes.http_server import Fault
from tests.fakes.sap_b1 import move

SPECS = Path("../shared/specs/dynamics365")
COLLECTIONS = {"InventoryMovementJournalHeaders": "InventInventoryMovementJournalHeaderEntity",
               "InventoryMovementJournalLine": "InventInventoryMovementJournalEntryV3Entity",
               "WarehousesOnHandV2": "InventWarehouseOnHandV2Entity"}
ODATA_OPTIONS = {"$filter", "$select", "cross-company", "$skiptoken"}


def cdm(entity: str) -> set[str]:
    definition = json.loads((SPECS / f"{entity}.cdm.json").read_text())["definitions"][0]
    assert definition["entityName"] == entity
    return {a["name"] for a in definition["hasAttributes"] if "dataType" in a} | {"dataAreaId"}


@pytest.fixture(scope="module")
def fo_capture(tmp_path_factory):
    """One realistic F&O session: moves, a lost answer then its search, a sale, on-hand reads."""
    mp = pytest.MonkeyPatch()
    with FakeAzureAd(tmp_path_factory.mktemp("ca")) as aad, FakeFinOps(aad) as fo:
        mp.setenv("REQUESTS_CA_BUNDLE", str(aad.ca_file))
        for item in ("CHAIR-BLUE", "CHAIR-RED"):
            fo.stock(item, "11", 100)
        mapping = fo_mapping(fo, role="system_of_record", location_roles={"WH2/Stock": "mirror"})
        d365 = fo_connector(fo, tmp_path_factory.mktemp("fo"), mapping=mapping)
        d365.post_moves([move("1", quantity="1.5"), move("2", direction="in", item="chair-red")])
        fo.served.fail_next(Fault(drop="after_commit", path="$batch"))
        d365.post_moves([move("3")])
        d365.post_moves([move("3")])
        d365.apply_stock_changes([Decrement(channel="shopify", order="9", line="1", item="chair-blue",
                                            location="WH/Stock", quantity=Decimal(2))])
        d365.read_availability([("chair-blue", "WH/Stock")])
        d365.close()
        mp.undo()
        return list(fo.received), list(fo.batches)


def test_journal_headers_and_lines_use_only_cdm_attributes(fo_capture):
    received, _ = fo_capture
    headers = [b for m, url, b in received if m == "POST" and url.endswith("/InventoryMovementJournalHeaders")]
    lines = [b for m, url, b in received if m == "POST" and url.endswith("/InventoryMovementJournalLine")]
    assert len(headers) == 3 and len(lines) == 4
    header_attrs = cdm(COLLECTIONS["InventoryMovementJournalHeaders"])
    line_attrs = cdm(COLLECTIONS["InventoryMovementJournalLine"])
    for header in headers:
        assert set(header) <= header_attrs, set(header) - header_attrs
        assert {"dataAreaId", "JournalNameId", "Description"} <= set(header) and len(header["Description"]) <= 60
    for line in lines:
        assert set(line) <= line_attrs, set(line) - line_attrs
        assert isinstance(line["InventoryQuantity"], (int, Decimal)) and line["InventoryQuantity"] != 0
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", line["TransactionDate"])


def test_reads_and_searches_use_cdm_attributes_and_documented_options(fo_capture):
    received, _ = fo_capture
    gets = [urlsplit(url) for m, url, _ in received if m == "GET"]
    assert {g.path.rsplit("/", 1)[-1] for g in gets} == {"InventoryMovementJournalHeaders", "WarehousesOnHandV2"}
    for get in gets:
        attrs, query = cdm(COLLECTIONS[get.path.rsplit("/", 1)[-1]]), parse_qs(get.query)
        assert set(query) <= ODATA_OPTIONS and query["cross-company"] == ["true"]
        assert set(query["$select"][0].split(",")) <= attrs
        assert {name for name, _ in re.findall(r"(\w+) eq '((?:[^']|'')*)'", query["$filter"][0])} <= attrs


def test_batch_is_one_changeset_of_application_http_parts_with_content_ids(fo_capture):
    _, batches = fo_capture
    assert len(batches) == 3  # moves, the move whose answer was lost, the sale (its replay was a search)
    for content_type, body in batches:
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        [changeset] = list(message.get_payload())
        assert message.get_content_type() == changeset.get_content_type() == "multipart/mixed"
        parts = list(changeset.get_payload())
        assert [p.get_content_type() for p in parts] == ["application/http"] * len(parts)
        assert [p["Content-ID"] for p in parts] == [str(n) for n in range(1, len(parts) + 1)]
        assert all(p["Content-Transfer-Encoding"] == "binary" for p in parts)
        first_lines = [(p.get_payload(decode=True) or b"").split(b"\r\n", 1)[0].decode() for p in parts]
        assert first_lines[0].startswith("POST http")
        assert first_lines[0].endswith("/InventoryMovementJournalHeaders HTTP/1.1")
        assert all(line == "POST $1/InventoryMovementJournalLine HTTP/1.1" for line in first_lines[1:])


# --- Inventory Visibility --------------------------------------------------------------------------
DOC = (SPECS / "inventory-visibility-api.md").read_text()


def documented_keys(path: str) -> set[str]:
    """Top-level keys of the ``Body:`` block documented for ``path`` (e.g. ``/onhand``)."""
    block = re.search(r"Path:\s*\n\s*/api/environment/\{environmentId\}" + re.escape(path) +
                      r"\s*\nMethod:.*?Body:\s*\n(.*?)```", DOC, re.S).group(1)
    return set(re.findall(r"^ {8}(\w+):", block, re.M))


def test_the_documented_keys_are_read_from_the_doc():
    assert documented_keys("/onhand") == {"id", "organizationId", "productId", "dimensionDataSource",
                                          "dimensions", "quantities"}
    assert documented_keys("/onhand/indexquery") == {"dimensionDataSource", "filters", "groupByValues",
                                                      "returnNegative"}


@pytest.fixture(scope="module")
def iv_capture(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    with FakeAzureAd(tmp_path_factory.mktemp("ca")) as aad, FakeInventoryVisibility(aad) as iv:
        mp.setenv("REQUESTS_CA_BUNDLE", str(aad.ca_file))
        iv.physical("CHAIR-BLUE", "1", "11", 10)
        mirror = iv_connector(iv, mapping=iv_mapping(iv, batch_size=1))
        mirror.post_moves([move("1")])
        bulk = iv_connector(iv)
        bulk.post_moves([move("2", quantity="0.5"), move("3", direction="in", location="WH2/Stock")])
        sor = iv_connector(iv, mapping=iv_mapping(iv, role="system_of_record"))
        sor.read_availability([("chair-blue", "WH/Stock"), ("chair-red", "WH2/Stock")])
        for connector in (mirror, bulk, sor):
            connector.close()
        mp.undo()
        return list(iv.received), list(iv.headers_seen), list(iv.token_requests)


def test_token_exchange_body_has_exactly_the_documented_keys(iv_capture):
    example = json.loads(re.search(r'(\{\s*"grant_type": "client_credentials",.*?\n\s*\})\n', DOC, re.S).group(1))
    for version, body in iv_capture[2]:
        assert version == "1.0" and set(body) == set(example)
        assert {k: body[k] for k in example if not example[k].startswith("{")} == \
               {k: v for k, v in example.items() if not v.startswith("{")}


def test_change_events_have_the_documented_shape(iv_capture):
    received, headers, _ = iv_capture
    events = [b for path, b in received if path == "/onhand"] + \
             [e for path, b in received if path == "/onhand/bulk" for e in b]
    assert len(events) == 3 and {path for path, _ in received} == {"/onhand", "/onhand/bulk", "/onhand/indexquery"}
    allowed = documented_keys("/onhand")
    for event in events:
        assert set(event) <= allowed and {"id", "organizationId", "productId", "dimensions", "quantities"} <= set(event)
        assert all(isinstance(event[k], str) for k in ("id", "organizationId", "productId"))
        assert all(isinstance(v, str) for v in event["dimensions"].values())
        assert {"siteId", "locationId"} <= set(event["dimensions"])
        assert all(isinstance(q, (int, Decimal)) for source in event["quantities"].values() for q in source.values())
    assert all(h.get("Api-Version") == "1.0" and h.get("Authorization", "").startswith("Bearer ") for h in headers)


def test_index_query_has_the_documented_shape(iv_capture):
    [query] = [b for path, b in iv_capture[0] if path == "/onhand/indexquery"]
    assert set(query) <= documented_keys("/onhand/indexquery")
    assert set(query["filters"]) == {"organizationId", "productId", "siteId", "locationId"}
    assert len(query["filters"]["organizationId"]) == 1  # "exactly one value" when partitioned by location
    assert isinstance(query["returnNegative"], bool) and query["groupByValues"] == ["siteId", "locationId"]
