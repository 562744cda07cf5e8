"""Sender(renew_on=...): a system that answers an expired credential with another status than 401
(Amazon SP-API: 403 Unauthorized) gets it renewed once and the request sent again; a status not
named is classified as it is, and a refusal that survives a fresh credential is not retried forever."""
from __future__ import annotations

import requests

from erp_bridge.connectors.runtime.auth import Renewing
from erp_bridge.connectors.runtime.sender import Reply, Sender
from erp_bridge.errors import RejectedError
from tests.fakes.amazon import SELLER, FakeAmazon

PATH = f"/listings/2021-08-01/items/{SELLER}/chair-blue"


class Counting(Renewing):
    """A credential that goes stale when the test says so; counts its renewals."""

    def __init__(self, amazon: FakeAmazon):
        super().__init__("x-amz-access-token", "")
        self.amazon = amazon

    def fetch(self) -> tuple[str, float]:
        response = requests.post(self.amazon.url + "/auth/o2/token", data={
            "grant_type": "refresh_token", "refresh_token": "Atzr|IwEBIfake-refresh-token-4b1d",
            "client_id": "amzn1.application-oa2-client.fake0123456789",
            "client_secret": "amzn1.oa2-cs.v1.fake-client-secret-7f3a"}, timeout=5)
        return response.json()["access_token"], 3600.0


def call(sender: Sender, amazon: FakeAmazon) -> Reply | Exception:
    return sender.call("GET", amazon.url + PATH, params={"marketplaceIds": "ATVPDKIKX0DER",
                                                         "includedData": "fulfillmentAvailability"})


def test_a_403_named_in_renew_on_renews_once_and_sends_again():
    with FakeAmazon() as amazon:
        amazon.list_sku("chair-blue", 4)
        auth = Counting(amazon)
        sender = Sender("amazon", auth=auth, renew_on=(401, 403))
        assert isinstance(call(sender, amazon), Reply) and auth.fetches == 1
        amazon.advance(3700)  # Amazon now refuses the cached token with 403
        reply = call(sender, amazon)
        assert isinstance(reply, Reply) and reply.body["fulfillmentAvailability"][0]["quantity"] == 4
        assert auth.fetches == 2
        sender.close()


def test_without_renew_on_a_403_is_classified_as_it_is():
    with FakeAmazon() as amazon:
        amazon.list_sku("chair-blue", 4)
        auth = Counting(amazon)
        sender = Sender("amazon", auth=auth)  # the default: 401 only
        call(sender, amazon)
        amazon.advance(3700)
        refused = call(sender, amazon)
        assert isinstance(refused, RejectedError) and refused.status == 403 and auth.fetches == 1
        sender.close()


def test_a_refusal_that_survives_a_fresh_credential_is_renewed_once_then_reported():
    from tests.fakes.amazon import Fault, errors
    with FakeAmazon() as amazon:
        amazon.list_sku("chair-blue", 4)
        auth = Counting(amazon)
        sender = Sender("amazon", auth=auth, renew_on=(401, 403))
        call(sender, amazon)
        denied = errors("Unauthorized", "Access to requested resource is denied.", "The app lacks the role")
        amazon.fail_next(Fault(403, body=denied), Fault(403, body=denied))
        refused = call(sender, amazon)
        assert isinstance(refused, RejectedError) and refused.status == 403 and auth.fetches == 2
        sender.close()
