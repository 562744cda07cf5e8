"""The SFCC connector on the fake SFCC (tests/fakes/sfcc.py): start-up checks, Account Manager
tokens, OCI batch-update outcomes per record, and the orders poll (keyset pages, cursor, status)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from erp_bridge.connectors import registry
from erp_bridge.connectors.base import Capability
from erp_bridge.connectors.sfcc.connector import PAGE, refused_records
from erp_bridge.domain import Delivered, Figure
from erp_bridge.errors import ConfigError, NotAttempted, RejectedError, RetryableError
from tests.fakes import sfcc_spec
from tests.fakes.sfcc import (
    BATCH_PATH,
    CLIENT_ID,
    CLIENT_SECRET,
    LOAD_SHED,
    LOCATION,
    ORDERS_PATH,
    RATE_LIMITED,
    FakeSfcc,
    Fault,
    connector_for,
    example_mapping_set,
    problem,
)

pytestmark = [pytest.mark.skipif(not sfcc_spec.available(), reason="../shared/specs/sfcc-oci is not beside the repo"),
              pytest.mark.filterwarnings("ignore:Unsupported scheme type")]


@pytest.fixture
def fake():
    with FakeSfcc() as double:
        yield double
        assert double.violations == []


@pytest.fixture
def sfcc(fake, tmp_path):
    connector = connector_for(fake, tmp_path / "m")
    yield connector
    connector.close()


def figure(sku: str, quantity: str) -> Figure:
    return Figure(sku, "WH/Stock", Decimal(quantity))


# -- start-up -------------------------------------------------------------------------------------

@pytest.mark.parametrize("edits, message", [
    ([("kind: oauth2_client_credentials", "kind: basic"), ("client_id: sfcc_client_id", "username: sfcc_client_id"),
      ("client_secret: sfcc_client_secret", "password: sfcc_client_secret")], "oauth2_client_credentials"),
    ([("SALESFORCE_COMMERCE_API:zzxy_prd ", "")], "SALESFORCE_COMMERCE_API:<realm>_<instance>"),
    ([("sfcc.orders ", "")], "add sfcc.orders"),
])
def test_a_mapping_that_cannot_work_is_refused_naming_the_fix(fake, tmp_path, edits, message):
    example_mapping_set(tmp_path / "m", fake.url)
    path = tmp_path / "m" / "sfcc.yaml"
    text = path.read_text()
    for old, new in edits:
        text = text.replace(old, new)
    path.write_text(text)
    from erp_bridge.mapping.loader import load_mappings
    with pytest.raises(ConfigError, match=message):
        registry.build(load_mappings(tmp_path / "m").systems["sfcc"],
                       {"sfcc_client_id": CLIENT_ID, "sfcc_client_secret": CLIENT_SECRET})


def test_without_a_site_the_connector_only_pushes(fake, tmp_path):
    example_mapping_set(tmp_path / "m", fake.url)
    path = tmp_path / "m" / "sfcc.yaml"
    path.write_text(path.read_text().replace("site: RefArch", "zone: east").replace("sfcc.orders ", ""))
    from erp_bridge.mapping.loader import load_mappings
    connector = registry.build(load_mappings(tmp_path / "m").systems["sfcc"],
                               {"sfcc_client_id": CLIENT_ID, "sfcc_client_secret": CLIENT_SECRET},
                               storage_url=f"sqlite:///{tmp_path}/q.sqlite3")
    assert connector.capabilities == frozenset({Capability.PUSH_AVAILABILITY})
    assert connector.push_availability([figure("stool", "1")]) == [Delivered("on hand set")]
    connector.close()


# -- availability out ----------------------------------------------------------------------------

def test_figures_set_on_hand_per_oci_location_rounded_down(sfcc, fake):
    results = sfcc.push_availability([figure("chair-blue", "7"), figure("stool", "2.99999")])
    assert results == [Delivered("on hand set"), Delivered("on hand set")]
    assert fake.on_hand == {("CHAIR-BLUE-01", LOCATION): 7, ("stool", LOCATION): Decimal("2.999")}
    (method, path, body), = [r for r in fake.received if r[1] == BATCH_PATH]
    assert len(body["records"]) == 2 and len({r["actionRequestId"] for r in body["records"]}) == 2


def test_the_same_record_sent_again_is_applied_once(sfcc, fake):
    fixed = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    sfcc._clock = lambda: fixed
    sfcc.push_availability([figure("stool", "5")])
    fake.on_hand[("stool", LOCATION)] = Decimal(4)  # a sale reserved meanwhile, say
    assert sfcc.push_availability([figure("stool", "5")]) == [Delivered("on hand set")]
    assert fake.on_hand[("stool", LOCATION)] == 4  # the same actionRequestId: OCI applied nothing again
    sfcc._clock = lambda: fixed + timedelta(seconds=1)
    sfcc.push_availability([figure("stool", "5")])
    assert fake.on_hand[("stool", LOCATION)] == 5  # a new effective date is a new request


def test_a_record_oci_refuses_dead_letters_with_its_reason_and_the_others_apply(sfcc, fake):
    fake.locations.discard(LOCATION)
    fake.locations.add("elsewhere")
    results = sfcc.push_availability([figure("stool", "1")])
    assert isinstance(results[0], RejectedError) and "Location warehouse-east does not exist" in str(results[0])


def test_a_batch_refused_whole_is_retried_record_by_record(sfcc, fake):
    fake.fail_next(Fault(400, body=problem("bad-request", "Bad Request", "records[1]: bad SKU"), path=BATCH_PATH))
    results = sfcc.push_availability([figure("chair-blue", "1"), figure("stool", "2")])
    assert results == [Delivered("on hand set"), Delivered("on hand set")]
    assert [len(r[2]["records"]) for r in fake.received if r[1] == BATCH_PATH] == [2, 1, 1]


def test_throttled_the_batch_stops_and_waits_as_told(sfcc, fake):
    fake.fail_next(RATE_LIMITED)
    first, second = sfcc.push_availability([figure("chair-blue", "1"), figure("stool", "2")])
    assert isinstance(first, RetryableError) and first.after == 1.0 and "Too Many Requests" in str(first)
    assert isinstance(second, RetryableError) and not isinstance(second, NotAttempted)  # same batch, same answer
    assert fake.on_hand == {}


def test_an_expired_token_is_renewed_once_and_the_push_goes_through(sfcc, fake):
    sfcc.push_availability([figure("stool", "1")])
    fake.expire_tokens()
    assert sfcc.push_availability([figure("stool", "3")]) == [Delivered("on hand set")]
    assert len(fake.token_requests) == 2 and fake.on_hand[("stool", LOCATION)] == 3
    assert all(CLIENT_SECRET not in str(r["form"]) for r in fake.token_requests)  # Basic header only


def test_wrong_credentials_are_a_config_error_naming_the_secrets_not_their_values(fake, tmp_path):
    example_mapping_set(tmp_path / "m", fake.url)
    from erp_bridge.mapping.loader import load_mappings
    mappings = load_mappings(tmp_path / "m")
    connector = registry.build(mappings.systems["sfcc"], {"sfcc_client_id": CLIENT_ID, "sfcc_client_secret": "nope"},
                               storage_url=f"sqlite:///{tmp_path}/q.sqlite3")
    result = connector.push_availability([figure("stool", "1")])[0]
    assert isinstance(result, ConfigError) and "invalid_client" in str(result)
    assert "sfcc_client_secret" in str(result) and "nope" not in str(result)
    connector.close()


def test_refused_records_reads_the_error_section_only():
    body = {"records": [{"actionRequestId": "a"}], "errors": [{"actionRequestId": "b", "message": "no such SKU"}],
            "failedRecords": [{"actionRequestId": "c", "errorCode": "InvalidQuantity"}]}
    assert refused_records(body) == {"b": "no such SKU", "c": "InvalidQuantity"}
    assert refused_records(None) == {} and refused_records({"errors": "x"}) == {}
    assert refused_records({"errors": [{"message": "tenant locked"}]}) == {"": "tenant locked"}


def test_an_error_that_names_no_record_refuses_the_batch_and_each_record_is_tried_alone(sfcc, fake):
    fake.fail_next(Fault(200, body={"records": [], "errors": [{"errorCode": "InternalError", "message": "try later"}]},
                         path=BATCH_PATH))
    assert sfcc.push_availability([figure("chair-blue", "1"), figure("stool", "2")]) == [Delivered("on hand set")] * 2
    fake.fail_next(Fault(200, body={"errors": [{"message": "tenant locked"}]}, path=BATCH_PATH))
    (alone,) = sfcc.push_availability([figure("stool", "3")])
    assert isinstance(alone, RejectedError) and "error for no record: tenant locked" in str(alone)


# -- sales in ------------------------------------------------------------------------------------

def poll(connector):
    polled = connector.poll_changes()
    connector.commit_poll(polled)
    return polled


def test_the_first_pass_starts_now_and_later_orders_come_in_once(sfcc, fake):
    fake.place("00000001", {"stool": 1}, at=datetime.now(UTC) - timedelta(hours=1))  # before the bridge
    assert poll(sfcc).changes == []
    fake.place("00000002", {"CHAIR-BLUE-01": 2})
    assert [(c.order, c.item, c.quantity) for c in poll(sfcc).changes] == [("00000002", "chair-blue", 2)]
    assert poll(sfcc).changes == []  # the overlap reads it again: nothing twice
    fake.set_status("00000002", "cancelled")
    assert [c.kind for c in poll(sfcc).changes] == ["increment"]


def test_pages_go_on_from_the_last_order_read_even_when_orders_share_a_timestamp(sfcc, fake):
    poll(sfcc)
    moment = datetime.now(UTC) + timedelta(seconds=1)
    for n in range(PAGE + 30):  # more than a page at one instant: offset steps over them
        fake.place(f"A{n:05d}", {"stool": 1}, at=moment)
    for n in range(PAGE + 5):
        fake.place(f"B{n:05d}", {"stool": 1}, at=moment + timedelta(milliseconds=n + 1))
    changes = poll(sfcc).changes
    assert len(changes) == 2 * PAGE + 35 and len({c.idempotency_key for c in changes}) == len(changes)
    queries = [r[2] for r in fake.received if r[1] == ORDERS_PATH]
    assert all(q["sortBy"] == "last_modified_date" and q["sortOrder"] == "asc" for q in queries)
    assert any(q["offset"] != "0" for q in queries) and len({q["lastModifiedDateFrom"] for q in queries}) >= 3


def test_a_failed_pass_commits_nothing_and_shows_in_the_status(sfcc, fake):
    poll(sfcc)
    fake.place("00000009", {"stool": 4})
    fake.fail_next(LOAD_SHED)
    with pytest.raises(RetryableError) as raised:
        sfcc.poll_changes()
    sfcc.poll_failed(str(raised.value))
    (status,) = sfcc.poll_status()
    assert status["resource"] == "orders:RefArch" and "Service Unavailable" in status["last_error"]
    assert [c.quantity for c in poll(sfcc).changes] == [4]
    assert sfcc.poll_status()[0]["last_error"] is None
