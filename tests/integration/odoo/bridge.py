"""The bridge as it runs in production (`erp-bridge serve`, a subprocess), wired to a real Odoo
and to the Shopify, SAP and generic-HTTP doubles. Used by the end-to-end tests and benchmark."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.fakes.sap_b1 import FakeServiceLayer
from tests.fakes.shopify import API_VERSION, FakeShopify

from .server import free_port, major

REPO = Path(__file__).resolve().parents[3]
ERP_BRIDGE = str(Path(sys.executable).with_name("erp-bridge"))
SHOP_LOCATION = "gid://shopify/Location/1"
SECRETS = {"odoo_password": "bridge-it-password", "odoo_nudge_secret": "nudge-it-5e1f",
           "shopify_token": "shpat_it_0c0ffee", "shopify_webhook_secret": "shpss_it_decaf",
           "sap_b1_user": "manager", "sap_b1_password": "secret", "admin_token": "adm-it-4242"}

ODOO = """version: 1
system: odoo
connector: odoo
role: system_of_record
connection:
  base_url: http://127.0.0.1:{port}
  database: {db}
  timeout_s: 10
  auth: {auth}
webhooks: {{secret: odoo_nudge_secret}}
locations: {{map: [{{internal: {stock}, code: {stock}}}]}}
"""
# JSON-RPC (odoorpc) with the user's password on 17 and 18; JSON-2 with an API key on 19
SESSION_AUTH = "{kind: session_login, secrets: {username: odoo_user, password: odoo_password}}"
JSON2_AUTH = "{kind: bearer, secrets: {token: odoo_api_key}}"
SHOPIFY = """version: 1
system: shopify
connector: shopify
role: channel
connection:
  base_url: {url}/admin/api/{version}
  timeout_s: 5
  auth: {{kind: header, header: X-Shopify-Access-Token, secrets: {{token: shopify_token}}}}
webhooks: {{secret: shopify_webhook_secret, default_location: "{location}"}}
items:
  lookup: {{file: shopify_items.csv, sku_column: sku, code_column: inventory_item_id}}
  unlisted: error
locations: {{map: [{{internal: {stock}, code: "{location}"}}]}}
quantity_policy: {{basis: free, integer: true}}
writes: {{mode: absolute, batch_size: 100, idempotency: {{strategy: graphql_idempotent}}}}
requests:
  set_available:
    on: [availability]
    method: POST
    path: /graphql.json
    body:
      query: >-
        mutation SetAvailable($input: InventorySetQuantitiesInput!, $key: String!) {{
        inventorySetQuantities(input: $input) @idempotent(key: $key) {{
        inventoryAdjustmentGroup {{ id }} userErrors {{ field message code }} }} }}
      variables:
        object:
          key: {{field: id}}
          input:
            object:
              name: available
              reason: correction
              referenceDocumentUri: {{format: "gid://erp-bridge/AvailabilityPush/{{id}}"}}
              quantities:
                lines:
                  inventoryItemId: {{format: "gid://shopify/InventoryItem/{{item_code}}"}}
                  locationId: {{field: location_code}}
                  quantity: {{field: quantity, transform: [int_floor]}}
                  changeFromQuantity: {{field: previous, transform: [int_floor]}}
"""
POS = """version: 1
system: pos
connector: http_json
role: channel
connection: {{base_url: "{url}", timeout_s: 5, auth: {{kind: none}}}}
locations: {{map: [{{internal: {stock}, code: store-1}}]}}
quantity_policy: {{basis: free, safety_buffer: 1}}
"""


@dataclass
class Bridge:
    url: str
    proc: subprocess.Popen
    log: Path

    def admin(self, path: str) -> dict:
        answer = requests.get(f"{self.url}{path}", timeout=5,
                              headers={"Authorization": f"Bearer {SECRETS['admin_token']}"})
        answer.raise_for_status()
        return answer.json()

    def post_webhook(self, system: str, headers: dict, body: bytes) -> requests.Response:
        return requests.post(f"{self.url}/webhooks/{system}", data=body, headers=headers, timeout=5)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def write_config(tmp: Path, odoo_port: int, db: str, stock: str, shop: FakeShopify, sap: FakeServiceLayer,
                 pos_url: str, skus: dict[str, str]) -> Path:
    maps = tmp / "mappings"
    maps.mkdir()
    auth = JSON2_AUTH if major() >= 19 else SESSION_AUTH
    (maps / "odoo.yaml").write_text(ODOO.format(port=odoo_port, db=db, stock=stock, auth=auth))
    (maps / "shopify.yaml").write_text(SHOPIFY.format(url=shop.url, version=API_VERSION, stock=stock,
                                                      location=SHOP_LOCATION))
    (maps / "shopify_items.csv").write_text("sku,inventory_item_id\n" + "".join(f"{s},{i}\n" for s, i in skus.items()))
    (maps / "pos.yaml").write_text(POS.format(url=pos_url, stock=stock))
    sap_text = (REPO / "mappings" / "sap_b1.yaml").read_text()
    sap_text = sap_text.replace("https://sap.example.com:50000/b1s/v1", sap.url).replace("WH/Stock", stock)
    sap_text = sap_text.replace('    - internal: WH2/Stock\n      code: "02"\n', "")  # one warehouse syncs here
    (maps / "sap_b1.yaml").write_text(sap_text)
    port = free_port()
    (tmp / "bridge.yaml").write_text(
        f"data_dir: data\nmappings_dir: mappings\nhttp: {{port: {port}}}\n"
        "workers: {count: 2, poll_interval_s: 0.05, outbox_poll_s: 0.5}\n"
        "retry: {base_s: 0.2, cap_s: 2, max_attempts: 30}\nqueue: {lease_s: 15}\n")
    return tmp / "bridge.yaml"


def environment(odoo_login: str, odoo_api_key: str | None = None, extra_env: dict | None = None) -> dict:
    """The bridge's environment: this one without ERP_BRIDGE_*, plus the secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_BRIDGE_")}
    env.update(extra_env or {})
    env.update({f"ERP_BRIDGE_SECRETS__{k.upper()}": v for k, v in SECRETS.items() if k != "admin_token"})
    env.update(ERP_BRIDGE_SECRETS__ODOO_USER=odoo_login, ERP_BRIDGE_ADMIN_TOKEN=SECRETS["admin_token"])
    if odoo_api_key:
        env["ERP_BRIDGE_SECRETS__ODOO_API_KEY"] = odoo_api_key
    return env


def start(config: Path, odoo_login: str, odoo_api_key: str | None = None, extra_env: dict | None = None) -> Bridge:
    """Start ``erp-bridge serve`` (again: the log is appended to) and wait until it is ready."""
    env = environment(odoo_login, odoo_api_key, extra_env)
    port = int(config.read_text().split("port: ")[1].split("}")[0])
    log = config.parent / "bridge.log"
    proc = subprocess.Popen([ERP_BRIDGE, "--config", str(config), "serve"], env=env,
                            stdout=log.open("a"), stderr=subprocess.STDOUT)
    bridge = Bridge(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{bridge.url}/readyz", timeout=1).status_code == 200:
                return bridge
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the bridge did not become ready:\n{bridge.log_text()[-3000:]}")
        time.sleep(0.2)


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.05, detail=None):
    """Poll ``predicate`` until it is truthy; on timeout say what was awaited and, through
    ``detail()``, what was seen instead."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; seen: {detail()}" if detail else ""
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{seen}")
        time.sleep(interval_s)
