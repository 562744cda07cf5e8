"""The webhook intake's world for benchmarks and tests: a config directory as an operator would write it."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def intake_config(tmp: Path, port: int, skus: int = 1, queue_url: str | None = None) -> Path:
    """A config dir taking Shopify orders: the shipped Shopify mapping as the channel (its webhook
    secret ``shopify_webhook_secret``), an Odoo system of record, both at an address that refuses
    connections (nothing is delivered: what is taken stays queued, retried in 30 s), and the SKUs
    BENCH-1 .. BENCH-``skus``; the queue in ``queue_url`` (default: the SQLite file in data/). The
    webhook benchmarks and the intake's kill -9 test use it."""
    maps = tmp / "mappings"
    maps.mkdir()
    (maps / "odoo.yaml").write_text("""version: 1
system: odoo
connector: odoo
role: system_of_record
connection: {base_url: "http://127.0.0.1:9", database: odoo, timeout_s: 2,
             auth: {kind: session_login, secrets: {username: odoo_user, password: odoo_password}}}
locations: {map: [{internal: WH/Stock, code: WH/Stock}]}
""")
    shop = (REPO / "mappings" / "shopify.yaml").read_text()
    shop = shop.replace("https://example-store.myshopify.com", "http://127.0.0.1:9")
    shop = re.sub(r"    - internal: WH2/Stock\n      code: gid://shopify/Location/61234567\n", "", shop)
    (maps / "shopify.yaml").write_text(shop)
    (maps / "shopify_items.csv").write_text("sku,inventory_item_id\n" + "".join(f"BENCH-{n},{n}\n" for n in range(1, skus + 1)))
    queue = f"queue: {{url: '{queue_url}'}}\n" if queue_url else ""
    (tmp / "bridge.yaml").write_text(f"data_dir: data\nmappings_dir: mappings\nhttp: {{port: {port}}}\n{queue}"
                                     "log_level: WARNING\nretry: {base_s: 30, cap_s: 600}\n")
    return tmp / "bridge.yaml"
