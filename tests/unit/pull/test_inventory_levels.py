"""GET /inventory-levels (seed 002) on the example mapping mappings/digital_river.yaml:
WH/Stock is location 20045 (ships to SE, NO, DK, FI, DE), WH2/Stock is 20046 (US, CA)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from .conftest import mappings_with
from .harness import TOKEN, make_app, restock

BLUE, RED = "310abe81-69f6-44e5-85df-2674045e5460", "ce4ce2de-530c-4da2-bf8a-f0f8cf059095"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def levels(tmp_path):
    def make(**pull):
        h = make_app(tmp_path, mappings_with(tmp_path, "digital_river", **pull)) if pull else make_app(tmp_path)
        h.sor.free.update({("chair-blue", "WH/Stock"): Decimal(6), ("chair-blue", "WH2/Stock"): Decimal(0),
                           ("chair-red", "WH/Stock"): Decimal(0), ("chair-red", "WH2/Stock"): Decimal(2)})
        h.sor.restock.update({"chair-red": restock("2026-12-01"), "chair-blue": restock("2026-12-24")})
        return h
    return make


def get(h, headers=AUTH, **params):
    return h.client.get("/inventory-levels", params=params, headers=headers)


def brief(response):
    return [(d["inventoryItemId"][:4], d["locationId"], d["availableQuantity"], d.get("availableTime"))
            for d in response.json()["data"]]


# (id, query, levels as (item prefix, location, quantity, availableTime))
CASES = [
    ("every_location", {"inventoryItemIds": BLUE},
     [("310a", "20045", 6, None), ("310a", "20046", 0, "2026-12-24T08:00:00Z")]),
    ("ship_to_sweden", {"inventoryItemIds": f"{BLUE},{RED}", "shipToCountry": "SE"},
     [("310a", "20045", 6, None), ("ce4c", "20045", 0, "2026-12-01T08:00:00Z")]),
    ("ship_to_lower_case", {"inventoryItemIds": BLUE, "shipToCountry": "us"}, [("310a", "20046", 0, "2026-12-24T08:00:00Z")]),
    ("ships_nowhere_there", {"inventoryItemIds": BLUE, "shipToCountry": "JP"}, []),
    ("available_true", {"inventoryItemIds": f"{BLUE},{RED}", "available": "true"},
     [("310a", "20045", 6, None), ("ce4c", "20046", 2, None)]),
    ("available_false", {"inventoryItemIds": BLUE, "available": "false"}, [("310a", "20046", 0, "2026-12-24T08:00:00Z")]),
    ("unknown_id_has_no_levels", {"inventoryItemIds": "nope"}, []),
    ("updated_since_future", {"inventoryItemIds": BLUE, "updatedSince": "2999-01-01T00:00:00Z"}, []),
    ("updated_since_past", {"inventoryItemIds": BLUE, "updatedSince": "2020-01-01T00:00:00+01:00"},
     [("310a", "20045", 6, None), ("310a", "20046", 0, "2026-12-24T08:00:00Z")]),
]


@pytest.mark.parametrize("query, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_levels(levels, query, expected):
    response = get(levels(), **query)
    assert response.status_code == 200 and brief(response) == expected


def test_level_fields_are_the_documented_ones(levels):
    data = get(levels(), inventoryItemIds=RED).json()["data"]
    assert data[0] == {"locationId": "20045", "inventoryItemId": RED, "available": False, "availableQuantity": 0,
                       "availableTime": "2026-12-01T08:00:00Z", "liveMode": False,
                       "updatedTime": data[0]["updatedTime"]}
    assert data[1].keys() == {"locationId", "inventoryItemId", "available", "availableQuantity", "liveMode",
                              "updatedTime"}  # available: no availableTime


# (id, query, parameter, message fragment)
BAD = [
    ("ids_missing", {}, "inventoryItemIds", "inventoryItemIds is required"),
    ("ids_empty", {"inventoryItemIds": " , "}, "inventoryItemIds", "inventoryItemIds is required"),
    ("too_many_ids", {"inventoryItemIds": ",".join(f"id{i}" for i in range(1001))}, "inventoryItemIds",
     "too many inventoryItemIds: 1001 (at most 1000"),
    ("unknown_country", {"inventoryItemIds": BLUE, "shipToCountry": "XX"}, "shipToCountry", "not an ISO 3166-1"),
    ("country_alpha3", {"inventoryItemIds": BLUE, "shipToCountry": "SWE"}, "shipToCountry", "not an ISO 3166-1"),
    ("bad_date", {"inventoryItemIds": BLUE, "updatedSince": "yesterday"}, "updatedSince", "ISO 8601"),
    ("date_without_zone", {"inventoryItemIds": BLUE, "updatedSince": "2021-01-12T06:55:14"}, "updatedSince",
     "with a time zone"),
    ("bad_available", {"inventoryItemIds": BLUE, "available": "maybe"}, "available", "true or false"),
    ("limit_zero", {"inventoryItemIds": BLUE, "limit": "0"}, "limit", "from 1 to 100"),
    ("limit_over_page_size", {"inventoryItemIds": BLUE, "limit": "101"}, "limit", "from 1 to 100"),
    ("starting_after_unknown", {"inventoryItemIds": BLUE, "startingAfter": "other"}, "startingAfter", "one of"),
]


@pytest.mark.parametrize("query, parameter, fragment", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_parameters_are_400_naming_the_parameter(levels, query, parameter, fragment):
    response = get(levels(), **query)
    errors = response.json()["errors"]
    assert response.status_code == 400 and [e["parameter"] for e in errors] == [parameter]
    assert fragment in errors[0]["message"]


def test_every_bad_parameter_is_reported_at_once(levels):
    response = get(levels(), shipToCountry="XX", updatedSince="x", limit="-1")
    assert [e["parameter"] for e in response.json()["errors"]] == [
        "inventoryItemIds", "shipToCountry", "updatedSince", "limit"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": TOKEN}], ids=["none", "wrong", "basic", "no_scheme"])
def test_without_the_bearer_token_it_is_401_before_anything_else(levels, headers):
    h = levels()
    response = get(h, headers=headers, inventoryItemIds=BLUE, shipToCountry="XX")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert TOKEN not in response.text and h.sor.reads == 0


def test_token_not_configured_is_503(levels):
    h = levels()
    h.runtime.settings.secrets.clear()
    assert get(h, inventoryItemIds=BLUE).status_code == 503


def test_pagination_over_the_id_list(levels):
    h = levels()
    ids = [BLUE, "unknown-1", RED]
    first = get(h, inventoryItemIds=",".join(ids), limit="2").json()
    second = get(h, inventoryItemIds=",".join(ids), limit="2", startingAfter="unknown-1").json()
    assert first["hasMore"] is True and {d["inventoryItemId"] for d in first["data"]} == {BLUE}
    assert second["hasMore"] is False and {d["inventoryItemId"] for d in second["data"]} == {RED}


def test_repeated_parameter_form_is_accepted(levels):
    response = levels().client.get(f"/inventory-levels?inventoryItemIds={BLUE}&inventoryItemIds={RED}"
                                   "&shipToCountry=SE", headers=AUTH)
    assert [d["inventoryItemId"] for d in response.json()["data"]] == [BLUE, RED]


@pytest.mark.parametrize("policy, status", [("reject", 200), ("accept", 503)])
def test_unreachable(levels, policy, status):
    h = levels(unreachable=policy, live_timeout_s=0.2)
    h.sor.down = True
    response = get(h, inventoryItemIds=BLUE, shipToCountry="SE")
    assert response.status_code == status and response.headers["X-Availability-Source"] == "unreachable"
    if policy == "reject":
        assert brief(response) == [("310a", "20045", 0, None)] and response.json()["data"][0]["available"] is False
    else:
        assert response.headers["Retry-After"] == "1"
        assert response.json()["errors"][0]["message"] == "Availability could not be confirmed"


def test_live_mode_flag(levels):
    assert get(levels(live_mode=True), inventoryItemIds=BLUE).json()["data"][0]["liveMode"] is True
