"""What is Zoho Inventory's own in its connector: the data-centre check, organization_id on every
call, the code/message envelope (also inside a 2xx), the bounded settle search, and how the
mapping's ``on_status`` changes the outcome of Zoho's answers. Against the double, no dispatcher."""
from __future__ import annotations

import pytest

from erp_bridge.connectors import zoho_inventory
from erp_bridge.connectors.runtime.context import ConnectorContext
from erp_bridge.connectors.zoho_inventory import ACCOUNTS, check_data_centre, from_context, organization_id
from erp_bridge.domain import Count, Delivered
from erp_bridge.errors import ConfigError, RejectedError, RetryableError
from tests.fakes.sap_b1 import Fault, move
from tests.fakes.zoho_inventory import ITEMS, FakeZoho, connector_for, secrets_for, stocked, zoho_mapping

POSTED, DUPLICATE = Delivered("posted"), Delivered("duplicate")


@pytest.fixture
def zoho():
    with FakeZoho() as fake:
        yield stocked(fake)


@pytest.fixture
def connector(zoho, tmp_path):
    c = connector_for(zoho, tmp_path)
    yield c
    c.close()


def with_hosts(zoho, api: str, token: str):
    mapping = zoho_mapping(zoho)
    auth = mapping.connection.auth.model_copy(update={"token_url": token})
    connection = mapping.connection.model_copy(update={"base_url": api, "auth": auth})
    return mapping.model_copy(update={"connection": connection})


# --- data centre ------------------------------------------------------------------------------
@pytest.mark.parametrize("dc", sorted(ACCOUNTS))
def test_every_data_centre_accepts_its_own_accounts_server(zoho, dc):
    check_data_centre(with_hosts(zoho, f"https://www.zohoapis.{dc}/inventory/v1",
                                 f"https://{ACCOUNTS[dc]}/oauth/v2/token"))


@pytest.mark.parametrize("dc", sorted(ACCOUNTS))
def test_a_token_url_of_another_data_centre_names_the_right_one(zoho, dc):
    other = "accounts.zoho.eu" if dc != "eu" else "accounts.zoho.com"
    with pytest.raises(ConfigError) as caught:
        check_data_centre(with_hosts(zoho, f"https://www.zohoapis.{dc}/inventory/v1",
                                     f"https://{other}/oauth/v2/token"))
    assert f"must be https://{ACCOUNTS[dc]}/oauth/v2/token" in str(caught.value)
    assert f"www.zohoapis.{dc}" in str(caught.value)


def test_the_canadian_data_centre_issues_tokens_on_zohocloud(zoho):
    assert ACCOUNTS["ca"] == "accounts.zohocloud.ca"
    with pytest.raises(ConfigError, match="accounts.zohocloud.ca"):
        check_data_centre(with_hosts(zoho, "https://www.zohoapis.ca/inventory/v1",
                                     "https://accounts.zoho.ca/oauth/v2/token"))


def test_an_api_host_of_no_data_centre_is_refused_with_the_list(zoho):
    with pytest.raises(ConfigError, match=r"www.zohoapis.de is not a Zoho data centre \(www.zohoapis.com, "):
        check_data_centre(with_hosts(zoho, "https://www.zohoapis.de/inventory/v1",
                                     "https://accounts.zoho.de/oauth/v2/token"))


def test_the_shipped_mapping_is_one_data_centre():
    from erp_bridge.mapping.schema import SystemMapping
    from erp_bridge.yamlpos import load_yaml_file
    from tests.fakes.zoho_inventory import MAPPING_FILE

    check_data_centre(SystemMapping.model_validate(load_yaml_file(MAPPING_FILE).data))


def test_the_factory_refuses_another_auth_kind(zoho, tmp_path):
    mapping = zoho_mapping(zoho)
    auth = mapping.connection.auth.model_copy(update={"kind": "bearer", "secrets": {"token": "zoho_token"}})
    mapping = mapping.model_copy(update={"connection": mapping.connection.model_copy(update={"auth": auth})})
    ctx = ConnectorContext(mapping, {"zoho_token": "x"}.__getitem__, {}, f"sqlite:///{tmp_path}/q.sqlite3")
    with pytest.raises(ConfigError, match="takes auth kind oauth2_refresh_token"):
        from_context(ctx)


# --- organization_id ----------------------------------------------------------------------------
def test_organization_id_is_the_one_every_request_sends(zoho):
    assert organization_id(zoho_mapping(zoho)) == "20071234567"


@pytest.mark.parametrize("change", ["missing", "different"])
def test_a_request_without_the_same_organization_id_is_a_config_error(zoho, change):
    mapping = zoho_mapping(zoho)
    sale = mapping.requests["sale"]
    query = {} if change == "missing" else {**sale.query, "organization_id": sale.query["organization_id"].model_copy(
        update={"const": "999"})}
    requests = {**mapping.requests, "sale": sale.model_copy(update={"query": query})}
    with pytest.raises(ConfigError, match="every request needs the same constant query.organization_id"):
        organization_id(mapping.model_copy(update={"requests": requests}))


def test_every_call_carries_the_organization_id(zoho, connector):
    zoho.fail_next(Fault(drop="after_commit", path="inventoryadjustments"))
    connector.post_moves([move("1")])
    connector.post_moves([move("1")])
    connector.read_availability([("chair-blue", "WH/Stock")])
    calls = zoho.api_calls()
    assert {(r.method, r.path.rsplit("/", 1)[-1]) for r in calls} == {
        ("POST", "inventoryadjustments"), ("GET", "inventoryadjustments"), ("GET", "itemdetails")}
    assert {r.query.get("organization_id") for r in calls} == {zoho.organization_id}


def test_a_wrong_organization_id_is_refused_with_zohos_message(zoho, tmp_path):
    zoho.organization_id = "111"
    c = connector_for(zoho, tmp_path)
    [result] = c.post_moves([move("1")])
    c.close()
    assert isinstance(result, RejectedError)
    assert str(result) == ("HTTP 400 from POST inventoryadjustments: Zoho error 6041: "
                           "This user is not associated with the organization 20071234567")


# --- the envelope, on_status ----------------------------------------------------------------------
def test_an_error_code_inside_a_2xx_is_a_refusal_and_the_event_stays_free(zoho, connector):
    zoho.fail_next(Fault(status=200, body={"code": 1001, "message": "Stock is locked"}, path="inventoryadjustments"))
    [refused] = connector.post_moves([move("1")])
    assert isinstance(refused, RejectedError) and "Zoho error 1001: Stock is locked" in str(refused)
    assert connector.post_moves([move("1")]) == [POSTED]  # nothing was created: posting again is right
    assert zoho.references() == ["odoo:move:1"]


@pytest.mark.parametrize("on_status, outcome", [
    ({"4xx": "fail"}, RejectedError),
    ({"400": "retry", "4xx": "fail"}, RetryableError),  # exact status beats the class
    ({"4xx": "retry"}, RetryableError),
    ({"400": "ignore"}, Delivered),
])
def test_on_status_decides_what_zohos_400_means(zoho, tmp_path, on_status, outcome):
    zoho.items.pop(ITEMS["chair-red"])  # Zoho answers 400 code 2006 for it
    c = connector_for(zoho, tmp_path, mapping=zoho_mapping(zoho, on_status=on_status))
    [result] = c.post_moves([move("1", item="chair-red")])
    c.close()
    assert isinstance(result, outcome), result
    if not isinstance(result, Delivered):
        assert "Zoho error 2006: Item with ID 4815000000044216 does not exist" in str(result)


def test_counts_are_refused_by_name(zoho, tmp_path):
    c = connector_for(zoho, tmp_path, mapping=zoho_mapping(zoho, role="system_of_record"))
    count = Count(system="pos", item="chair-blue", location="WH/Stock", quantity=3, reference="c1")
    [result] = c.apply_stock_changes([count])
    c.close()
    assert isinstance(result, RejectedError) and "not absolute counts" in str(result)


# --- the bounded settle search --------------------------------------------------------------------
def test_a_search_that_cannot_reach_the_window_dead_letters_with_what_to_check(zoho, connector, monkeypatch):
    monkeypatch.setattr(zoho_inventory, "SETTLE_MAX_PAGES", 2)
    zoho.fail_next(Fault(status=500, path="inventoryadjustments"))  # unknown outcome: the intent stays
    assert isinstance(connector.post_moves([move("1")])[0], RetryableError)
    zoho.adjustments.extend({"inventory_adjustment_id": str(n), "date": "2999-01-01", "reason": "r",
                             "reference_number": f"other-{n}", "adjustment_type": "quantity", "line_items": []}
                            for n in range(450))
    [result] = connector.post_moves([move("1")])
    assert isinstance(result, RejectedError)
    assert "reference_number odoo:move:1" in str(result) and "2 pages" in str(result)
    assert [r.query["page"] for r in zoho.api_calls("GET", "/inventory/v1/inventoryadjustments")] == ["1", "2"]
    assert "odoo:move:1" not in zoho.references()


def test_a_search_stops_at_the_first_page_older_than_the_window(zoho, connector):
    zoho.fail_next(Fault(status=500, path="inventoryadjustments"))
    connector.post_moves([move("1")])
    zoho.adjustments.extend({"inventory_adjustment_id": str(n), "date": "2001-01-01", "reason": "r",
                             "reference_number": f"old-{n}", "adjustment_type": "quantity", "line_items": []}
                            for n in range(450))
    assert connector.post_moves([move("1")]) == [POSTED]
    assert [r.query["page"] for r in zoho.api_calls("GET", "/inventory/v1/inventoryadjustments")] == ["1"]
    assert zoho.references().count("odoo:move:1") == 1


def test_the_mapping_limits_stay_under_zohos_documented_limits(zoho):
    limits = zoho_mapping(zoho).limits
    assert limits.rate_per_s * 60 < 100  # 100 requests per minute per organisation
    assert limits.concurrency <= 5  # concurrent calls on the Free plan (10 on paid plans)
    assert limits.burst <= 100 - limits.rate_per_s * 60


def test_secrets_for_the_double_are_the_mappings_names(zoho):
    assert set(secrets_for(zoho, zoho_mapping(zoho))) == {"zoho_client_id", "zoho_client_secret", "zoho_refresh_token"}


# --- several lines per adjustment (writes.batch_size > 1) -------------------------------------------
def test_a_refused_multi_line_adjustment_is_retried_line_by_line(zoho, tmp_path):
    c = connector_for(zoho, tmp_path, mapping=zoho_mapping(zoho, batch_size=3))
    zoho.fail_next(Fault(status=200, body={"code": 1001, "message": "Stock is locked"}, path="inventoryadjustments"))
    assert c.post_moves([move("1"), move("2", item="chair-red"), move("3", item="007")]) == [POSTED] * 3
    c.close()
    assert sorted(zoho.references()) == ["odoo:move:1", "odoo:move:2", "odoo:move:3"]
    assert [len(r.body["line_items"]) for r in zoho.api_calls("POST")] == [3, 1, 1, 1]


def test_one_line_zoho_refuses_rejects_only_its_event(zoho, tmp_path):
    zoho.items.pop(ITEMS["007"])
    c = connector_for(zoho, tmp_path, mapping=zoho_mapping(zoho, batch_size=3))
    first, second, third = c.post_moves([move("1"), move("2", item="007"), move("3", item="chair-red")])
    c.close()
    assert first == third == POSTED
    assert isinstance(second, RejectedError) and "Zoho error 2006" in str(second)
    assert sorted(zoho.references()) == ["odoo:move:1", "odoo:move:3"]
