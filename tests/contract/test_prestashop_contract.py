"""Every request the PrestaShop connector sends, checked against the webservice's devdocs pages in
../shared/specs/prestashop (no machine-readable spec exists; tests/contract/prestashop_docs.py reads
the field tables, blank schemas and list-parameter rules from the pages themselves)."""
from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
import xmltodict

from erp_bridge.domain import Figure
from tests.contract import prestashop_docs as docs
from tests.fakes.prestashop import FakePrestaShop, connector_for

pytestmark = pytest.mark.skipif(not docs.available(), reason="../shared/specs/prestashop is not beside the repo")

#: docs-reference.md, "Available HTTP methods": stock_availables takes GET, PUT, PATCH, HEAD (no POST)
METHODS = {"stock_availables": {"GET", "PUT", "PATCH", "HEAD"}, "orders": {"GET", "HEAD"},
           "order_details": {"GET", "HEAD"}, "configurations": {"GET", "HEAD"}}


@pytest.fixture(scope="module")
def sent(tmp_path_factory):
    """What the connector sent through a push and three polls with orders in them."""
    directory = tmp_path_factory.mktemp("presta")
    with FakePrestaShop() as shop:
        shop.add_stock(12, 0, 4)
        shop.add_stock(30, 31, 4)
        connector = connector_for(shop, directory)
        try:
            connector.push_availability([Figure("chair-blue", "WH/Stock", Decimal(7)),
                                         Figure("mug-s", "WH/Stock", Decimal("2.5"))])
            connector.commit_poll(connector.poll_changes())
            order = shop.place_order([(12, 0, 1), (30, 31, 2)])
            connector.commit_poll(connector.poll_changes())
            shop.set_state(order, 6)
            connector.commit_poll(connector.poll_changes())
        finally:
            connector.close()
        assert shop.violations == []
        return shop.key, list(shop.requests)


def test_the_docs_are_read_as_tables_not_guessed():
    stock = docs.fields("stock_availables")
    assert {n for n, f in stock.items() if f.required} == {"id_product", "id_product_attribute", "quantity",
                                                           "depends_on_stock", "out_of_stock"}
    assert stock["quantity"].format == "isInt" and stock["quantity"].max_size == 10
    assert docs.blank("stock_availables")[0] == "id" and "location" in docs.blank("stock_availables")
    assert docs.fields("orders")["date_upd"].filterable and not docs.fields("orders")["shipping_number"].filterable
    assert {"id_order", "product_quantity", "product_attribute_id"} <= set(docs.fields("order_details"))


def test_every_request_authenticates_with_the_key_as_username_and_no_password(sent):
    """docs-getting-started.md: "The username is the authentication key you created and there is no
    password to enter"; the header form is ``Authorization: Basic base64(key:)``."""
    key, requests = sent
    expected = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    assert requests and all(r["headers"].get("Authorization") == expected for r in requests)
    assert all(key not in r["url"] for r in requests)  # never ws_key= in a URL (it would reach access logs)


def test_every_request_uses_a_documented_resource_and_method(sent):
    for request in sent[1]:
        resource = urlsplit(request["url"]).path.removeprefix("/api/").split("/")[0]
        assert request["method"] in METHODS[resource], request["url"]


def test_every_listing_uses_documented_parameters_on_documented_fields(sent):
    """additional-list-parameters.md: display ``full`` or ``[f1,f2]``, ``filter[field]`` forms,
    ``sort=[field_ASC]``, ``limit=[offset,]limit``; getting-started.md: "The date=1 parameter must be
    used to allow date filtering"; orders.md marks which fields are not filterable."""
    gets = [r for r in sent[1] if r["method"] == "GET"]
    assert {urlsplit(r["url"]).path for r in gets} == {"/api/stock_availables", "/api/orders", "/api/order_details",
                                                       "/api/configurations"}
    for request in gets:
        plural = urlsplit(request["url"]).path.removeprefix("/api/")
        assert docs.query_problems(plural, request["url"]) == [], request["url"]


def test_orders_are_read_by_date_upd_in_ascending_order_with_date_1(sent):
    orders = [r["url"] for r in sent[1] if urlsplit(r["url"]).path == "/api/orders"]
    assert orders and all("date=1" in u and "sort=%5Bdate_upd_ASC%2Cid_ASC%5D" in u and "filter%5Bdate_upd%5D=" in u
                          for u in orders)


def test_every_put_is_the_whole_stock_available_in_the_prestashop_envelope(sent):
    """getting-started.md, "Update a resource": GET the full XML, "then send a PUT HTTP request with
    the whole XML file as a body content"; no formatting inside tags. stock_availables.md: the blank
    schema's fields, each in its format (quantity isInt, max 10 digits)."""
    puts = [r for r in sent[1] if r["method"] == "PUT"]
    assert len(puts) == 2
    for request in puts:
        assert request["headers"].get("Content-Type") == "application/xml"
        assert b"\n" not in request["body"].split(b"?>", 1)[-1].strip() and b"\t" not in request["body"]
        doc = xmltodict.parse(request["body"])
        resource = doc["prestashop"]["stock_available"]
        values = {k: v or "" for k, v in resource.items()}
        assert tuple(values) == docs.blank("stock_availables")  # every field, none added
        assert docs.body_problems("stock_availables", values) == []
        assert values["id"] == urlsplit(request["url"]).path.rsplit("/", 1)[1]
    assert [xmltodict.parse(r["body"])["prestashop"]["stock_available"]["quantity"] for r in puts] == ["7", "2"]


def test_the_poll_window_is_written_in_shop_time():
    """getting-started.md's date filter example: ``[2019-11-14 13:00:00,2019-11-14 14:00:00]``."""
    from zoneinfo import ZoneInfo

    from erp_bridge.connectors.prestashop.orders import from_shop_time, shop_time
    moment = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert shop_time(moment, ZoneInfo("Europe/Paris")) == "2026-07-01 14:00:00"
    assert from_shop_time("2026-07-01 14:00:00", ZoneInfo("Europe/Paris")) == moment
    assert from_shop_time("0000-00-00 00:00:00", ZoneInfo("UTC")) is None
    assert moment - timedelta(hours=2) == from_shop_time("2026-07-01 12:00:00", ZoneInfo("Europe/Paris"))


def test_the_connector_reads_the_documented_xml_cdata_and_xlink_included():
    """getting-started.md, "Read a resource": values in CDATA, ids with an ``xlink:href`` attribute;
    stock_availables.md's blank schema read as a resource gives back every field, empty."""
    from erp_bridge.connectors.prestashop import webservice
    blank = docs.page("stock_availables").split("```xml", 1)[1].split("```", 1)[0].encode()
    assert webservice.resource(blank, "stock_available") == dict.fromkeys(docs.blank("stock_availables"), "")
    sample = (b'<?xml version="1.0" encoding="UTF-8"?><prestashop xmlns:xlink="http://www.w3.org/1999/xlink">'
              b'<stock_availables><stock_available><id><![CDATA[5]]></id>'
              b'<id_product xlink:href="http://example.com/api/products/12"><![CDATA[12]]></id_product>'
              b'<quantity><![CDATA[3]]></quantity><location></location></stock_available></stock_availables>'
              b'</prestashop>')
    assert webservice.listing(sample, "stock_availables", "stock_available") == [
        {"id": "5", "id_product": "12", "quantity": "3", "location": ""}]
