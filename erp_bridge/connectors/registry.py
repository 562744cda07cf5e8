"""The one list of connector kinds. The mapping schema's ``connector`` enum is derived from it,
and ``serve``, ``worker`` and ``config check`` build connectors through ``build`` alone.

A kind names the module and factory that build it, imported only when a mapping uses it (no
import cycles, no start-up cost). A factory takes a ``ConnectorContext`` (the mapping, a secret
source, the lookup tables, the storage) and returns a connector that declares its capabilities.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from ..errors import ConfigError
from ..settings import Settings
from .base import Connector

if TYPE_CHECKING:
    from ..mapping.lookups import LookupTable
    from ..mapping.schema import SystemMapping
    from .runtime.context import ConnectorContext

Factory = Callable[["ConnectorContext"], Connector]
DEFAULT_STORAGE = "sqlite:///var/queue.sqlite3"


@dataclass(frozen=True)
class Kind:
    name: str
    #: module (relative to this package) and factory; None: named by the product, not built yet
    module: str | None
    factory: str = "from_context"
    summary: str = ""
    #: the vendor's documented limits, used where the mapping's ``limits`` leaves a field unset
    limits: Mapping[str, float] = field(default_factory=dict)


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("sap_b1", ".sap_b1", summary="SAP Business One Service Layer"),
    Kind("netsuite", ".netsuite", summary="NetSuite SuiteTalk: SOAP (upsertList, item search) or REST record API"),
    Kind("dynamics365", ".dynamics365.finops", summary="Dynamics 365 Supply Chain Management (F&O OData)"),
    Kind("dynamics365_iv", ".dynamics365.inventory_visibility", summary="Dynamics 365 Inventory Visibility"),
    # 100 requests per minute per organisation; 5 concurrent calls on the free plan (10 paid)
    Kind("zoho_inventory", ".zoho_inventory", summary="Zoho Inventory",
         limits={"concurrency": 5, "rate_per_s": 1.5, "burst": 10}),
    Kind("odoo", ".odoo", "OdooConnector.from_context", "Odoo through the stock_sync_bridge module"),
    Kind("shopify", ".shopify.connector", summary="Shopify Admin GraphQL"),
    Kind("square", ".square", summary="Square Inventory API (POS and online)"),
    Kind("woocommerce", ".woocommerce.connector", summary="WooCommerce REST API v3"),
    Kind("bigcommerce", ".bigcommerce.connector", summary="BigCommerce Inventory API (V3) and orders (V2)"),
    # Bulk Update is throttled at 600 requests/min; every REST endpoint at 6,000/min per IP
    Kind("ordergroove", ".ordergroove", summary="Ordergroove product live flag (Real Time Stock Update)",
         limits={"rate_per_s": 10, "burst": 10}),
    Kind("sfcc", ".sfcc", summary="Salesforce B2C Commerce: Omnichannel Inventory out, SCAPI orders polled"),
    # PrestaShop publishes no rate limit (the shop's host may answer 429/503): one call at a time
    Kind("prestashop", ".prestashop", summary="PrestaShop webservice (XML): stock_availables out, orders polled",
         limits={"concurrency": 1, "rate_per_s": 5, "burst": 10}),
    # 300 x registers + 50 requests per 5 minutes per retailer and app (350 with one register)
    Kind("lightspeed_x", ".lightspeed_x.connector", summary="Lightspeed Retail X-Series (Vend) API 2.0/2.1",
         limits={"concurrency": 1, "rate_per_s": 1.0, "burst": 10}),
    # 16 requests/s and 5 concurrent requests per access token (50/s, 10 concurrent per app)
    Kind("clover", ".clover.connector", summary="Clover REST API v3 (item_stocks, orders)",
         limits={"concurrency": 5, "rate_per_s": 16.0, "burst": 16}),
    # leaky bucket: 60 units draining 1/s documented; the connector paces by X-LS-API-Bucket-Level
    Kind("lightspeed_r", ".lightspeed_r", summary="Lightspeed Retail (R-Series) API V3",
         limits={"concurrency": 1, "rate_per_s": 1.0, "burst": 10}),
    # 60 calls per minute per API application (503 when exceeded)
    Kind("cin7_core", ".cin7_core", summary="Cin7 Core (DEAR) API v2",
         limits={"concurrency": 1, "rate_per_s": 1.0, "burst": 5}),
    # patchListingsItem 5 requests/s, burst 5 (the push path; the order poller paces its own calls)
    Kind("amazon_sp", ".amazon", summary="Amazon Selling Partner API (Listings Items, Orders v0 polling)",
         limits={"concurrency": 2, "rate_per_s": 5, "burst": 5}),
    # Magento publishes no admin REST rate; its input limits (20 items a call, 300 a page) are in the module
    Kind("magento", ".magento", summary="Magento 2 / Adobe Commerce REST: MSI source items, orders polled"),
    Kind("http_json", ".http_json", summary="a custom JSON endpoint"),
    Kind("pull", "..sync.pull", "client_from_context", "a store that pulls availability"),
)}


def kinds() -> tuple[str, ...]:
    return tuple(KINDS)


def build(mapping: SystemMapping, secrets: Any, lookups: Mapping[str, LookupTable] | None = None,
          storage_url: str | None = None) -> Connector:
    """The connector for ``mapping``. ``secrets``: the settings object (``.secret(name)``) or a
    plain mapping of secret names to values; ``storage_url`` defaults to the settings' queue."""
    from .runtime.context import ConnectorContext

    kind = KINDS.get(mapping.connector)
    if kind is None:
        raise ConfigError(f"system {mapping.system}: no connector {mapping.connector!r} "
                          f"(available: {', '.join(kinds())})")
    if kind.module is None:
        raise ConfigError(f"system {mapping.system}: connector {kind.name!r} is not built in this version "
                          f"({kind.summary}); leave its secrets unset to keep the mapping inactive")
    storage = storage_url or (secrets.queue_url if isinstance(secrets, Settings) else DEFAULT_STORAGE)
    context = ConnectorContext(mapping, secret_source(secrets), lookups or {}, storage)
    target: Any = import_module(kind.module, __package__)
    for part in kind.factory.split("."):
        target = getattr(target, part)
    return target(context)


def secret_source(secrets: Any) -> Callable[[str], str]:
    """name -> value, from the settings object or a plain mapping; never log or echo a value."""
    def secret(name: str) -> str:
        if isinstance(secrets, Settings):
            return secrets.secret(name).get_secret_value()
        if name not in secrets:
            raise ConfigError(f"secret {name!r} is not configured")
        value = secrets[name]
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return secret
