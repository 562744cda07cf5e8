"""What an integrator edits per system: the pydantic models behind ``mappings/<system>.yaml``.

Every model rejects unknown keys; codes and SKUs are ``str`` so an unquoted ``007`` or ``42`` is an
error that says to quote it; quantities are ``Decimal``. Checks that need a key path into the file
(secret names per auth kind, duplicate locations, field availability per event...) live in
checks.py so that each error points at the exact line. Secret *names* live here, never values.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from ..connectors.registry import KINDS, kinds
from .nodes import FormatText, NodeIn, TransformName
from .transforms import TRIGGERS

SCHEMA_VERSION = 1
#: the registry is the one list of kinds; a mapping naming another is refused here
CONNECTOR_KINDS = kinds()
ROLES = ("system_of_record", "mirror", "channel", "pull_client")
#: a pull client asks for availability (docs/pull.md); the router never pushes to it
Role = Literal["system_of_record", "mirror", "channel", "pull_client"]
Trigger = Literal["move_in", "move_out", "decrement", "increment", "count", "availability"]
assert tuple(Trigger.__args__) == TRIGGERS  # type: ignore[attr-defined]

Code = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
NonNegative = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
#: ISO 3166-1 alpha-2, the 249 officially assigned codes (as the tz database's iso3166.tab lists them)
COUNTRY_CODES = frozenset(["AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW"])
_SECRET_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_STATUS_RE = re.compile(r"^[1-5]([0-9]{2}|xx)$")
_CREDENTIAL_HEADER = re.compile(r"authorization|cookie|token|secret|password|api-?key", re.I)


#: what real tokens look like (vendor prefixes; long runs of hex): a *name* never does
_TOKEN_SHAPED = re.compile(r"^(shp(at|ca|pa|ss|ua|tka)_|sk_(live|test)_|rk_(live|test)_|pk_(live|test)_|"
                           r"gh[pousr]_|glpat|xox[abpr]|sq0(atp|csp)|eaaa|ya29)|[0-9a-f]{16,}|[0-9a-z]{32,}")


def _secret_name(value: Any) -> str:
    # Never echo the value: whoever typed a secret where its name belongs must not see it in logs.
    if isinstance(value, str) and _SECRET_RE.match(value) and _TOKEN_SHAPED.search(value):
        raise ValueError("this looks like a secret value (a token), not a secret name: put the value in "
                         "settings, the environment or $CREDENTIALS_DIRECTORY and name it here, e.g. "
                         "shopify_token; revoke the token if this file was shared")
    if not isinstance(value, str) or not _SECRET_RE.match(value):
        raise ValueError("expected a secret name (lower-case letters, digits and _, e.g. shopify_token), "
                         "not a secret value: values come from settings, the environment or "
                         "$CREDENTIALS_DIRECTORY")
    return value


def _base_url(value: Any) -> str:
    # Same rule as secrets: a URL may embed a token, so the message never repeats it.
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", value):
        raise ValueError("expected an http:// or https:// URL without query or fragment")
    if "@" in value.split("/")[2]:
        raise ValueError("credentials do not belong in the URL; name them in connection.auth.secrets")
    return value.rstrip("/")


def _connector(value: str) -> str:
    if value not in CONNECTOR_KINDS:
        raise ValueError(f"unknown connector '{value}' (known: {', '.join(CONNECTOR_KINDS)})")
    return value


def _status(value: str) -> str:
    if not _STATUS_RE.match(value):
        raise ValueError(f"expected an HTTP status such as \"409\" or a class such as \"5xx\", got '{value}'")
    return value


def _header_name(value: str) -> str:
    if _CREDENTIAL_HEADER.search(value) and value.lower() not in ("idempotency-key", "x-netsuite-idempotency-key"):
        raise ValueError(f"header '{value}' carries credentials: name the secrets in connection.auth instead")
    return value


def _country(value: str) -> str:
    if value not in COUNTRY_CODES:
        hint = " (upper case)" if value.upper() in COUNTRY_CODES else ""
        raise ValueError(f"'{value}' is not an ISO 3166-1 alpha-2 country code{hint}, e.g. SE, DE, US")
    return value


def _header_text(value: str) -> str:
    # shown through an HTTP header: latin-1 only, one line (a newline would forge headers)
    if any(c in value for c in "\r\n\0") or not value.isprintable():
        raise ValueError("a message is one line of printable text (it is sent as an HTTP header)")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("a message is sent as an HTTP header: use Latin-1 characters only") from None
    return value


SecretName = Annotated[str, BeforeValidator(_secret_name), WithJsonSchema({"type": "string", "pattern": _SECRET_RE.pattern})]
BaseUrl = Annotated[str, BeforeValidator(_base_url), WithJsonSchema({"type": "string", "format": "uri"})]
ConnectorKind = Annotated[str, AfterValidator(_connector), WithJsonSchema({"enum": list(CONNECTOR_KINDS)})]
StatusKey = Annotated[str, AfterValidator(_status)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderText = Annotated[str, StringConstraints(max_length=500), AfterValidator(_header_text)]
Country = Annotated[str, AfterValidator(_country), WithJsonSchema({"enum": sorted(COUNTRY_CODES)})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


AuthKind = Literal["none", "basic", "bearer", "header", "headers", "oauth2_client_credentials", "oauth2_refresh_token",
                   "session_login", "oauth1_tba", "azure_ad_client_credentials", "inventory_visibility",
                   "ordergroove_hmac"]


class Auth(Strict):
    """How to authenticate. ``secrets`` maps each credential the kind needs to a secret NAME; for kind
    ``headers`` each key is a header name that carries its secret as is (Cin7 Core: api-auth-accountid
    and api-auth-applicationkey)."""

    kind: AuthKind
    secrets: dict[str, SecretName] = {}
    header: str = "Authorization"
    #: text before the credential in ``header``; by default "Basic ", "Bearer " or "" by kind
    prefix: str | None = None
    token_url: BaseUrl | None = None
    scope: str | None = None
    #: Azure AD (Entra ID) kinds: the tenant's authority, https://login.microsoftonline.com/<tenant id>
    authority: BaseUrl | None = None


class Connection(Strict):
    base_url: BaseUrl
    auth: Auth
    timeout_s: float = Field(default=10, gt=0, le=300)
    #: the database / company a login opens (Odoo database, SAP CompanyDB): a name, not a secret
    database: Code | None = None
    #: constant headers sent with every request (never credentials: see ``auth``)
    headers: dict[HeaderName, str] = {}
    #: SOAP systems (NetSuite): the WSDL, an https URL or a file path; fetched once, cached on disk.
    #: Unset: derived from base_url (docs/connectors/netsuite.md)
    wsdl: Code | None = None


class Limits(Strict):
    """Calls at once and calls a second to the system: for every process together when the queue
    is PostgreSQL (docs/scaling.md), for the one process of a SQLite queue."""

    concurrency: int = Field(default=4, ge=1, le=256)
    rate_per_s: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, ge=1)


class ItemOverride(Strict):
    sku: Code
    code: Code


class ItemLookup(Strict):
    """A CSV table (header row first) next to the mapping file: one row per SKU."""

    file: Code
    sku_column: Code = "sku"
    code_column: Code = "code"


class Variant(Strict):
    """A pull client's item code plus selected options -> one SKU (real-time inventory script)."""

    code: Code
    #: option name -> value as the store sends them (compared case-insensitively, trimmed)
    options: dict[Code, Code] = Field(min_length=1)
    sku: Code


class Items(Strict):
    """Internal SKU -> the system's item id: overrides, then lookup table, then the rule."""

    #: the internal product field that holds the SKU (Odoo: default_code)
    field: Code = "default_code"
    #: the system's field the id goes to or is read from (documentation and connector reads)
    target_field: Code | None = None
    #: the rule: transforms applied to the SKU (text -> text) when no override or row has it
    transform: list[TransformName] = []
    overrides: list[ItemOverride] = []
    lookup: ItemLookup | None = None
    #: a SKU in neither overrides nor lookup: map it by the rule, or refuse it
    unlisted: Literal["rule", "error"] = "rule"
    #: pull clients: an item code whose options select the SKU (option-less items use overrides)
    variants: list[Variant] = []


class LocationEntry(Strict):
    internal: Code
    code: Code
    role: Role | None = None
    #: with several internal locations on one code: the one that inbound changes apply to
    primary: bool = False
    #: extra per-location values a body reads as ``attr.NAME`` (e.g. a Dynamics siteId)
    attrs: dict[Code, Code] = {}
    #: pull clients (inventory levels): the countries this location ships to
    ship_to: list[Country] = []


class Locations(Strict):
    #: how figures of several internal locations mapped to one code combine (required then)
    aggregation: Literal["sum", "min", "max"] | None = None
    map: list[LocationEntry] = Field(min_length=1)


class UnitRule(Strict):
    """system quantity = internal quantity x factor, then rounded to ``rounding`` (none: exact)."""

    factor: Positive = Decimal(1)
    rounding: Positive | None = None
    mode: Literal["down", "half_up", "half_even", "up"] = "half_up"


class Units(Strict):
    default: UnitRule = UnitRule()
    #: by the event's unit of measure (the UoM name the SoR journals, e.g. "Dozens")
    uoms: dict[Code, UnitRule] = {}
    #: by SKU; wins over ``uoms``
    items: dict[Code, UnitRule] = {}


class QuantityPolicy(Strict):
    """What a channel shows: basis - buffer, x allocation %, capped, >= 0, rounded down if integer."""

    basis: Literal["free", "on_hand", "forecast"]
    safety_buffer: NonNegative = Decimal(0)
    allocation_percent: Annotated[Decimal, Field(gt=0, le=100)] = Decimal(100)
    max_listed: NonNegative | None = None
    integer: bool = True
    low_stock_threshold: NonNegative | None = None
    #: channels that switch a product off at the threshold (Ordergroove's ``live``) switch it back on
    #: only at threshold + hysteresis, so a figure hovering at the threshold does not flap; 0: as
    #: soon as the figure is above the threshold (docs/connectors/ordergroove.md)
    low_stock_hysteresis: NonNegative = Decimal(0)


class Idempotency(Strict):
    """How the target avoids doing a write twice; ``field`` names where the key goes."""

    strategy: Literal["none", "reference_field", "external_id", "header", "body_id", "graphql_idempotent",
                      "external_key"]
    field: Code | None = None


StatusAction = Literal["retry", "fail", "ignore"]
_DEFAULT_STATUS: dict[str, StatusAction] = {"429": "retry", "5xx": "retry", "4xx": "fail"}


class Writes(Strict):
    mode: Literal["delta", "absolute"] = "delta"
    batch_size: int = Field(default=1, ge=1, le=1000)
    idempotency: Idempotency = Idempotency(strategy="none")
    on_status: dict[StatusKey, StatusAction] = dict(_DEFAULT_STATUS)
    #: Magento: the shop runs without Multi-Source Inventory, so figures go to each product's one
    #: stock item (PUT /V1/products/{sku}/stockItems/{id}) instead of per source (docs/connectors/magento.md)
    single_source: bool = False

    def action_for(self, status: int) -> str:
        """retry / fail / ignore for an HTTP error status: exact entry, then class, then default."""
        for key in (str(status), f"{str(status)[0]}xx"):
            if key in self.on_status:
                return self.on_status[key]
        return _DEFAULT_STATUS.get(str(status)) or _DEFAULT_STATUS.get(f"{str(status)[0]}xx", "fail")


class RequestSpec(Strict):
    """One HTTP request per event (or per batch of events, as document lines)."""

    on: list[Trigger] = Field(min_length=1)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    #: appended to connection.base_url; ``{field}`` slots are URL-encoded
    path: FormatText
    query: dict[str, NodeIn] = {}
    headers: dict[HeaderName, NodeIn] = {}
    body: dict[str, NodeIn] | None = None

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("path must start with / (it is appended to connection.base_url)")
        return value


class Webhooks(Strict):
    """Inbound webhooks of a channel (Shopify orders, cancellations, refunds)."""

    #: NAME of the secret the deliveries are signed with (Shopify: the app's client secret)
    secret: SecretName
    #: channel location code for an order that carries no location (online orders often don't)
    default_location: Code | None = None
    #: the notification URL exactly as registered with the platform, for schemes that sign the URL
    #: with the body (Square); behind a proxy the URL the bridge sees differs, so it is configured
    notification_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2000)] | None = None
    #: the platform's own statuses that count as a sale (unset: the platform's default, see
    #: docs/connectors/<system>.md). Order statuses for WooCommerce, status ids for BigCommerce;
    #: for Square, the inventory states an IN_STOCK quantity moves to when sold
    sale_statuses: list[Code] | None = Field(default=None, min_length=1)
    #: statuses that give the stock back: a cancelled (or restocked refunded) order; for Square, the
    #: states a quantity moves back to IN_STOCK from
    restock_statuses: list[Code] | None = Field(default=None, min_length=1)


class Polling(Strict):
    """Sales read by polling the platform's orders, for platforms without usable webhooks
    (PrestaShop, Amazon, ...): which of its order states count, as the platform names them
    (PrestaShop: ``current_state`` ids; Amazon: ``OrderStatus``); unset: the platform's default,
    see docs/connectors/<system>.md."""

    #: states in which an order's lines are sold (each line decremented once)
    sale_statuses: list[Code] | None = Field(default=None, min_length=1)
    #: states that give counted stock back (a cancelled or refunded order): each line incremented once
    restock_statuses: list[Code] | None = Field(default=None, min_length=1)
    #: how far before its cursor each pass re-reads, so an order saved late is not skipped
    overlap_s: float = Field(default=300, ge=0, le=86400)


class PullMessages(Strict):
    """What the shopper reads (``Inventory-Message``); ``{available}`` and ``{requested}`` are filled in."""

    in_stock: HeaderText = "In stock"
    #: some stock, less than requested, no backorders
    insufficient: HeaderText = "Only {available} in stock"
    out_of_stock: HeaderText = "Out of stock"
    #: less than requested and the store takes backorders
    backordered: HeaderText = "Only {available} in stock; the rest will be backordered"
    #: unreachable: accept (the store then lets the order through: seed 000's own wording)
    unconfirmed: HeaderText = "Availability could not be confirmed"
    #: unreachable: reject
    rejected: HeaderText = "Availability could not be checked right now; please try again in a few minutes"
    #: the code or options match no SKU, or the system of record does not know the SKU
    unknown_item: HeaderText = "This item is not available"


class Pull(Strict):
    """How a pull client is answered (docs/pull.md). Mirrors the store's own settings."""

    protocol: Literal["realtime_inventory", "inventory_levels"]
    #: realtime_inventory: which form field names the item (.code or .id)
    item_field: Literal["code", "id"] = "code"
    #: quantity: report the figure; availability: report 1 (available) or 0
    display: Literal["quantity", "availability"] = "quantity"
    #: the store lets shoppers order more than available: the real figure is still reported
    backorders: bool = False
    #: system of record unreachable and the cache stale: reject (0) or accept (negative = unknown)
    unreachable: Literal["reject", "accept"] = "accept"
    messages: PullMessages = PullMessages()
    #: a cached figure younger than this is answered without asking the system of record
    fresh_s: float = Field(default=5.0, ge=0, le=3600)
    #: how long a live read may take before the unreachable policy answers
    live_timeout_s: float = Field(default=0.8, gt=0, le=30)
    #: inventory_levels: NAME of the bearer token secret the caller presents
    token_secret: SecretName | None = None
    #: inventory_levels: the liveMode every level reports
    live_mode: bool = False
    #: inventory_levels: most inventoryItemIds in one request, and the default/maximum page size
    max_ids: int = Field(default=1000, ge=1, le=10000)
    page_size: int = Field(default=100, ge=1, le=1000)


class SystemMapping(Strict):
    """One ``mappings/<system>.yaml``."""

    version: int
    system: Name
    connector: ConnectorKind
    #: the role of every location that does not set its own
    role: Role | None = None
    connection: Connection
    limits: Limits = Limits()
    items: Items = Items()
    locations: Locations
    units: Units = Units()
    quantity_policy: QuantityPolicy | None = None
    writes: Writes = Writes()
    requests: dict[Name, RequestSpec] = {}
    webhooks: Webhooks | None = None
    polling: Polling | None = None
    pull: Pull | None = None

    _compiled: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _vendor_limits(self) -> SystemMapping:
        """Fields the file leaves out of ``limits`` take the vendor's documented limits (registry)."""
        defaults = {k: v for k, v in KINDS[self.connector].limits.items() if k not in self.limits.model_fields_set}
        if defaults:
            given = self.limits.model_dump(include=self.limits.model_fields_set)
            self.limits = Limits.model_validate({**defaults, **given})
        return self

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported mapping version {value}; this bridge reads version {SCHEMA_VERSION}")
        return value

    @field_validator("webhooks")
    @classmethod
    def _default_location_mapped(cls, value: Webhooks | None, info) -> Webhooks | None:
        # a default outside locations.map would turn every location-less order into a dead letter
        locations = info.data.get("locations")
        if value is None or value.default_location is None or locations is None:
            return value
        codes = list(dict.fromkeys(e.code for e in locations.map))
        if value.default_location not in codes:
            raise ValueError(f"default_location '{value.default_location}' is not a code in locations.map "
                             f"(codes: {', '.join(codes)})")
        return value

    def role_of(self, internal_location: str) -> str | None:
        for entry in self.locations.map:
            if entry.internal == internal_location:
                return entry.role or self.role
        return None

    @property
    def roles(self) -> set[str]:
        return {role for entry in self.locations.map if (role := entry.role or self.role) is not None}

    def role_names(self) -> set[str]:
        return self.roles

    def location_entry(self, internal_location: str) -> LocationEntry | None:
        return next((e for e in self.locations.map if e.internal == internal_location), None)

    def internal_location(self, code: str) -> str | None:
        """The internal location a system code stands for (the primary one when many map to it)."""
        entries = [e for e in self.locations.map if e.code == code]
        chosen = next((e for e in entries if e.primary), entries[0] if len(entries) == 1 else None)
        return chosen.internal if chosen else None

    def internal_locations(self, code: str) -> list[str]:
        """Every internal location aggregated into ``code`` (see ``locations.aggregation``)."""
        return [e.internal for e in self.locations.map if e.code == code]
