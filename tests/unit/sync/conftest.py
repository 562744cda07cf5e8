"""A small mapping set written as an integrator would: Odoo holds two warehouses, Shopify sells
both as one location (sum), a POS sells WH only, SAP mirrors WH."""
from __future__ import annotations

import pytest

from erp_bridge.mapping.loader import load_mappings

FILES = {
    "odoo.yaml": """
version: 1
system: odoo
connector: odoo
role: system_of_record
connection: {base_url: "http://127.0.0.1:9", database: odoo, auth: {kind: session_login, secrets: {username: odoo_user, password: odoo_password}}}
locations: {map: [{internal: WH/Stock, code: WH/Stock}, {internal: WH2/Stock, code: WH2/Stock}]}
""",
    "shop.yaml": """
version: 1
system: shop
connector: http_json
role: channel
connection: {base_url: "http://127.0.0.1:9", auth: {kind: none}}
items:
  overrides: [{sku: "007", code: "inv-7"}]
  unlisted: error
locations:
  aggregation: sum
  map:
    - {internal: WH/Stock, code: "web-1", primary: true}
    - {internal: WH2/Stock, code: "web-1"}
quantity_policy: {basis: free, safety_buffer: 1}
""",
    "pos.yaml": """
version: 1
system: pos
connector: http_json
role: channel
connection: {base_url: "http://127.0.0.1:9", auth: {kind: none}}
locations: {map: [{internal: WH/Stock, code: "store-9"}]}
quantity_policy: {basis: free}
""",
    "sap.yaml": """
version: 1
system: sap
connector: http_json
role: mirror
connection: {base_url: "http://127.0.0.1:9", auth: {kind: none}}
locations: {map: [{internal: WH/Stock, code: "01"}]}
""",
}


@pytest.fixture
def mappings(tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    return load_mappings(tmp_path)
