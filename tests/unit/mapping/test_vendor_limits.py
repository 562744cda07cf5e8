"""The registry's documented vendor limits fill what a mapping leaves unset in ``limits``."""
from __future__ import annotations

from pathlib import Path

import pytest

from erp_bridge.mapping.schema import SystemMapping
from erp_bridge.yamlpos import load_yaml_file

ZOHO = Path(__file__).parents[3] / "mappings" / "zoho_inventory.yaml"


def zoho(limits):
    data = load_yaml_file(ZOHO).data
    if limits is None:
        del data["limits"]
    else:
        data["limits"] = limits
    return SystemMapping.model_validate(data).limits


@pytest.mark.parametrize("limits, expected", [
    (None, (5, 1.5, 10)),
    ({"concurrency": 10}, (10, 1.5, 10)),  # a paid plan: more concurrent calls, same per-minute rate
    ({"rate_per_s": 0.5, "burst": 2}, (5, 0.5, 2)),
], ids=["no-limits-section", "concurrency-only", "rate-only"])
def test_unset_limits_take_zohos_documented_ones(limits, expected):
    got = zoho(limits)
    assert (got.concurrency, got.rate_per_s, got.burst) == expected
