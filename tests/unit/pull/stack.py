"""The whole bridge for pull tests: the real runtime (build_runtime: SQLite queue, dispatcher,
router, cache, reader), the real HTTP app, with SAP Business One as the system of record behind
its real connector, talking HTTP to the Service Layer fake (tests/fakes/sap_b1.py). Sales arrive
through the real Shopify webhook intake, signed as Shopify signs them.

The example mappings ship as they are, pointed at the fake: sap_b1 (role system_of_record),
shopify (channel, webhooks), yahoo_store and digital_river (pull clients).
"""
from __future__ import annotations

import itertools
import re
import shutil
import socket
from pathlib import Path

from erp_bridge.settings import Settings

from .harness import REPO, TOKEN

WEBHOOK_SECRET = "whsec_pull_tests_0123456789"
SL_USER = ("SBODEMOUS", "manager", "secret")
_orders = itertools.count(1000)


def closed_port_url() -> str:
    """A URL nothing listens on (bound, then closed): connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/b1s/v1"


def write_mappings(directory: Path, sap_url: str, **pull) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("shopify.yaml", "shopify_items.csv", "yahoo_store.yaml", "digital_river.yaml"):
        shutil.copy(REPO / "mappings" / name, directory / name)
    sap = (REPO / "mappings" / "sap_b1.yaml").read_text()
    sap = re.sub(r"base_url: \S+", f"base_url: {sap_url}", sap).replace("role: mirror", "role: system_of_record")
    (directory / "sap_b1.yaml").write_text(re.sub(r"timeout_s: \d+", "timeout_s: 3", sap))
    yahoo = (directory / "yahoo_store.yaml").read_text()
    for key, value in pull.items():
        yahoo = re.sub(rf"^  {key}: .*$", f"  {key}: {value}", yahoo, flags=re.M)
    (directory / "yahoo_store.yaml").write_text(yahoo)
    return directory


def settings_for(tmp_path: Path, sap_url: str, **pull) -> Settings:
    return Settings(data_dir=tmp_path / "var", mappings_dir=write_mappings(tmp_path / "mappings", sap_url, **pull),
                    workers={"count": 2, "poll_interval_s": 0.02},
                    retry={"base_s": 0.05, "cap_s": 0.2, "jitter": 0},
                    secrets={"sap_b1_user": SL_USER[1], "sap_b1_password": SL_USER[2],
                             "shopify_token": "shpat_unused", "shopify_webhook_secret": WEBHOOK_SECRET,
                             "digital_river_pull_token": TOKEN})


def order_webhook(sku: str, quantity: int = 1) -> tuple[dict, bytes]:
    """An orders/create delivery for the shop's one location, signed with the webhook secret."""
    from tests.fakes.shopify import signed_webhook
    order = next(_orders)
    payload = {"id": order, "line_items": [{"id": order * 10, "sku": sku, "quantity": quantity}]}
    return signed_webhook(WEBHOOK_SECRET, "orders/create", payload, webhook_id=f"wh-{order}")
