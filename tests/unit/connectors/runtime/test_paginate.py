"""runtime/paginate.py on dicts, and Sender.pages walking a real listing (the Zoho double)."""
from __future__ import annotations

import pytest

from erp_bridge.connectors.runtime.auth import OAuth2
from erp_bridge.connectors.runtime.paginate import NextLink, PageNumber, PageState
from erp_bridge.connectors.runtime.sender import Sender
from erp_bridge.errors import ConfigError, RejectedError
from tests.fakes.sap_b1 import Fault
from tests.fakes.zoho_inventory import FakeZoho

ZOHO_MORE = PageNumber(has_more=lambda body: bool((body.get("page_context") or {}).get("has_more_page")))


def test_page_number_starts_at_one_with_the_page_size_and_keeps_the_callers_params():
    assert ZOHO_MORE.first({"organization_id": "7"}) == PageState({"organization_id": "7", "page": 1, "per_page": 200})
    custom = PageNumber(has_more=lambda b: True, page_param="p", size_param="limit", size=50)
    assert custom.first({}) == PageState({"p": 1, "limit": 50})


def test_page_number_counts_up_while_the_body_says_more_and_stops_when_it_does_not():
    state = ZOHO_MORE.first({"organization_id": "7"})
    second = ZOHO_MORE.next(state, {"page_context": {"has_more_page": True}})
    assert second == PageState({"organization_id": "7", "page": 2, "per_page": 200})
    assert ZOHO_MORE.next(second, {"page_context": {"has_more_page": True}}).params["page"] == 3
    assert ZOHO_MORE.next(second, {"page_context": {"has_more_page": False}}) is None
    assert ZOHO_MORE.next(second, {"page_context": {}}) is None


@pytest.mark.parametrize("body, url", [
    ({"@odata.nextLink": "https://h/odata/Items?$skiptoken=2"}, "https://h/odata/Items?$skiptoken=2"),
    ({"odata.nextLink": "Items?$skip=20"}, "https://h/b1s/v1/Items?$skip=20"),  # V3, relative
    ({"odata.nextLink": "/Items?$skip=20"}, "https://h/b1s/v1/Items?$skip=20"),
    ({"value": []}, None),
    ({"@odata.nextLink": ""}, None),
    ("not a dict", None),
])
def test_next_link_follows_v4_and_v3_links_absolute_or_relative(body, url):
    paginator = NextLink(base_url="https://h/b1s/v1/")
    state = paginator.first({"$filter": "x"})
    assert state == PageState({"$filter": "x"})
    following = paginator.next(state, body)
    assert (following.url if following else None) == url
    if following:
        assert following.params == {}  # the link carries its own query


def adjustments(n):
    return [{"inventory_adjustment_id": str(i), "date": "2026-01-01", "reason": "r", "reference_number": f"r{i}",
             "adjustment_type": "quantity", "line_items": []} for i in range(n)]


@pytest.fixture
def zoho():
    with FakeZoho() as fake:
        fake.adjustments.extend(adjustments(450))
        yield fake


def sender(zoho):
    client_id, secret, refresh = zoho.client
    return Sender("zoho", timeout_s=2.0, auth=OAuth2(zoho.token_url, client_id, secret, refresh_token=refresh,
                                                     prefix="Zoho-oauthtoken "))


def test_sender_pages_walks_every_page_once(zoho):
    s = sender(zoho)
    pages = list(s.pages("GET", zoho.url + "/inventoryadjustments", ZOHO_MORE, what="GET list",
                         params={"organization_id": zoho.organization_id}))
    s.close()
    assert [len(p.body["inventory_adjustments"]) for p in pages] == [200, 200, 50]
    assert [r.query["page"] for r in zoho.api_calls("GET")] == ["1", "2", "3"]


def test_sender_pages_stops_at_max_pages_with_a_config_error(zoho):
    s = sender(zoho)
    with pytest.raises(ConfigError, match="GET list: more than 2 pages; narrow the query"):
        list(s.pages("GET", zoho.url + "/inventoryadjustments", ZOHO_MORE, what="GET list", max_pages=2,
                     params={"organization_id": zoho.organization_id}))
    s.close()


def test_sender_pages_raises_the_first_failure(zoho):
    invalid = {"code": 4, "message": "Invalid value passed for page"}
    zoho.fail_next(Fault(status=400, body=invalid, path="inventoryadjustments"))
    s = sender(zoho)
    with pytest.raises(RejectedError, match="HTTP 400 from GET list: .*Invalid value passed for page"):
        list(s.pages("GET", zoho.url + "/inventoryadjustments", ZOHO_MORE, what="GET list",
                     params={"organization_id": zoho.organization_id}))
    s.close()
