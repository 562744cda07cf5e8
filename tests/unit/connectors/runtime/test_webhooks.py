"""runtime/webhooks.py's digest comparisons: hex (either case) and base64, a malformed header is a
401 naming it, never a 500."""
from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from erp_bridge.connectors.runtime.webhooks import (
    WebhookRejected,
    base64_digest_matches,
    hex_digest_matches,
    hmac_sha256,
)

DIGEST = hmac_sha256(b"key", b"body")


def test_hmac_sha256_is_the_standard_hmac():
    assert hmac.new(b"key", b"body", hashlib.sha256).digest() == DIGEST


@pytest.mark.parametrize("given, expected", [
    (DIGEST.hex(), True), (DIGEST.hex().upper(), True), (f"  {DIGEST.hex()} ", True),
    (hmac_sha256(b"other", b"body").hex(), False), (DIGEST.hex()[:-2], False)],
    ids=["lower", "upper", "padded", "other key", "truncated"])
def test_hex_digests_compare_in_either_case(given, expected):
    assert hex_digest_matches(given, DIGEST, "X-Signature") is expected


@pytest.mark.parametrize("given", ["zz", "abc", "sha256=00"])
def test_a_header_that_is_not_hex_is_a_401_naming_it(given):
    with pytest.raises(WebhookRejected) as refused:
        hex_digest_matches(given, DIGEST, "X-Signature")
    assert refused.value.status == 401 and "malformed X-Signature header (not hex)" in str(refused.value)


def test_base64_digests_still_compare():
    assert base64_digest_matches(base64.b64encode(DIGEST).decode(), DIGEST, "H")
    with pytest.raises(WebhookRejected, match="not base64"):
        base64_digest_matches("%%%", DIGEST, "H")
