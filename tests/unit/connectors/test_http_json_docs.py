"""docs/connectors/http_json.md's worked example runs as written: its mapping (the YAML block)
loads and checks, and the request the bridge sends to a real endpoint on 127.0.0.1 is the one
the page shows (path, Idempotency-Key, bearer token, body)."""
from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

from erp_bridge.connectors import registry
from erp_bridge.domain import Delivered, Figure
from erp_bridge.mapping.loader import load_mappings
from tests.fakes.http_target import FakeTarget

PAGE = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "http_json.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_worked_example_sends_what_the_page_shows(tmp_path):
    [mapping] = blocks("yaml")
    [table] = blocks("csv")
    shown = json.loads(blocks("json")[0])
    with FakeTarget() as target:
        (tmp_path / "portal.yaml").write_text(re.sub(r"base_url: \S+", f"base_url: {target.url}/erp-bridge", mapping))
        (tmp_path / "portal_items.csv").write_text(table)
        mappings = load_mappings(tmp_path, secret_names={"portal_token"})
        connector = registry.build(mappings.systems["portal"], {"portal_token": "tok-123"}, mappings.lookups)
        figure = Figure("chair-blue", "WH/Stock", Decimal("6"), previous=Decimal("8"),
                        idempotency_key=shown["idempotency_key"])
        assert connector.push_availability([figure]) == [Delivered()]
        assert connector.push_availability([figure]) == [Delivered("duplicate")]  # the endpoint had the key
        connector.close()
    sent = target.received[0]
    assert sent.path.strip("/") == "erp-bridge/availability" and sent.key == shown["idempotency_key"]
    assert sent.headers["Authorization"] == "Bearer tok-123" and sent.body == shown
