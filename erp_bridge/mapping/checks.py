"""Checks that need the whole file: each yields ``(key path, message)`` so the loader can say which
line to fix. They run after the schema passed, on the validated model; none has side effects."""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterator

from .nodes import Node, format_parts, literal_number, walk_dict
from .schema import Pull, RequestSpec, SystemMapping
from .transforms import ANY, ATTR_PREFIX, NUMBER, TEXT, chain_type, field_type

Found = Iterator[tuple[tuple, str]]

AUTH_SECRETS = {
    "none": (), "basic": ("username", "password"), "bearer": ("token",), "header": ("token",), "headers": (),
    "oauth2_client_credentials": ("client_id", "client_secret"),
    "oauth2_refresh_token": ("client_id", "client_secret", "refresh_token"),
    "session_login": ("username", "password"),
    "oauth1_tba": ("consumer_key", "consumer_secret", "token_id", "token_secret"),
    "azure_ad_client_credentials": ("client_id", "client_secret"),
    "inventory_visibility": ("client_id", "client_secret"),
    "ordergroove_hmac": ("public_id", "sig_field", "hash_key"),
}
OPTIONAL_SECRETS = {"oauth1_tba": ("account",)}
ROLE_TRIGGERS = {"mirror": ("move_in", "move_out"), "channel": ("availability",),
                 "system_of_record": ("decrement", "increment"), "pull_client": ()}
#: connectors that build their own requests when a mapping has none (a generic JSON target)
# Connectors that speak a fixed protocol of their own (http_json: its JSON shape; odoo: the
# stock_sync_bridge module's API over odoorpc; ordergroove: a JSON array of live flags the engine
# cannot build), so their mappings hold no request bodies.
# PrestaShop: the webservice takes the whole stock_available resource back, as it holds it.
SELF_BUILDING = ("http_json", "odoo", "ordergroove", "prestashop")
#: systems whose HTTP Basic username is the whole credential (an API key) and whose password is empty
KEY_AS_USERNAME = ("prestashop",)
KEYED_STRATEGIES = ("reference_field", "external_id", "header", "body_id")
HEADER_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def check_mapping(m: SystemMapping, secret_names: Collection[str] | None) -> Found:
    yield from _auth(m)
    if secret_names is not None:
        yield from _secrets_configured(m, secret_names)
    yield from _limits(m)
    yield from _items(m)
    yield from _locations(m)
    yield from _roles(m)
    yield from _writes(m)
    yield from _requests(m)
    yield from _pull(m)


def secret_message(name: str) -> str:
    return (f"secret '{name}' is not configured: set ERP_BRIDGE_SECRETS__{name.upper()} "
            f"or put a file named {name} in $CREDENTIALS_DIRECTORY")


def _auth(m: SystemMapping) -> Found:
    auth, at = m.connection.auth, ("connection", "auth")
    if auth.kind == "headers":
        yield from _header_secrets(auth.secrets, at)
        return
    needed = AUTH_SECRETS[auth.kind]
    if auth.kind == "basic" and m.connector in KEY_AS_USERNAME:
        needed = ("username",)
    for role in needed:
        if role not in auth.secrets:
            yield (*at, "secrets"), f"{auth.kind} auth needs a secret name for '{role}'"
    allowed = (*needed, *OPTIONAL_SECRETS.get(auth.kind, ()))
    for role in auth.secrets:
        if role not in allowed:
            yield (*at, "secrets", role), f"{auth.kind} auth takes no '{role}' (takes: {', '.join(allowed) or 'none'})"
    if auth.kind.startswith("oauth2") and auth.token_url is None:
        yield at, f"{auth.kind} auth needs token_url"
    if auth.kind in ("azure_ad_client_credentials", "inventory_visibility") and auth.authority is None:
        yield at, f"{auth.kind} auth needs authority (https://login.microsoftonline.com/<tenant id>)"
    if auth.kind == "azure_ad_client_credentials" and auth.scope is None:
        yield at, f"{auth.kind} auth needs scope (F&O: https://<environment>.operations.dynamics.com/.default)"


def _header_secrets(secrets: dict[str, str], at: tuple) -> Found:
    """kind ``headers``: each key of ``secrets`` is the header its secret goes in."""
    if not secrets:
        yield (*at, "secrets"), "headers auth needs at least one header name -> secret name"
    for header in secrets:
        if not HEADER_TOKEN.fullmatch(header):
            yield (*at, "secrets", header), f"'{header}' is not an HTTP header name (letters, digits, - and _)"


def _secrets_configured(m: SystemMapping, secret_names: Collection[str]) -> Found:
    for role, name in m.connection.auth.secrets.items():
        if name not in secret_names:
            yield ("connection", "auth", "secrets", role), secret_message(name)
    if m.pull is not None and m.pull.token_secret and m.pull.token_secret not in secret_names:
        yield ("pull", "token_secret"), secret_message(m.pull.token_secret)


def _limits(m: SystemMapping) -> Found:
    if m.limits.burst is not None and m.limits.rate_per_s is None:
        yield ("limits", "burst"), "burst needs rate_per_s (a burst of what rate?)"


def _items(m: SystemMapping) -> Found:
    seen: dict[str, int] = {}
    for index, override in enumerate(m.items.overrides):
        if override.sku in seen:
            yield ("items", "overrides", index, "sku"), f"duplicate SKU '{override.sku}' (first at overrides[{seen[override.sku]}])"
        seen.setdefault(override.sku, index)
    _, problem = chain_type(TEXT, m.items.transform)
    if problem or chain_type(TEXT, m.items.transform)[0] not in (TEXT, ANY):
        yield ("items", "transform"), problem or "the item rule must give text (add transform 'string')"
    if m.items.unlisted == "error" and not (m.items.overrides or m.items.lookup):
        yield ("items", "unlisted"), "unlisted: error with neither overrides nor lookup maps no item at all"


def _locations(m: SystemMapping) -> Found:
    entries, first = m.locations.map, dict[str, int]()
    for index, entry in enumerate(entries):
        if entry.internal in first:
            yield ("locations", "map", index, "internal"), (
                f"internal location '{entry.internal}' is mapped twice (first at map[{first[entry.internal]}])")
        first.setdefault(entry.internal, index)
        if entry.role is None and m.role is None:
            yield ("locations", "map", index), "no role: set role here or at the top of the file"
    yield from _many_to_one(m)


def _many_to_one(m: SystemMapping) -> Found:
    counts = Counter(e.code for e in m.locations.map)
    for code, count in counts.items():
        if count < 2:
            continue
        where = next(i for i, e in enumerate(m.locations.map) if e.code == code)
        if m.locations.aggregation is None:
            yield ("locations", "map", where, "code"), (
                f"code '{code}' is mapped from {count} internal locations: state locations.aggregation (sum, min or max)")
        primaries = [e for e in m.locations.map if e.code == code and e.primary]
        if len(primaries) != 1:
            yield ("locations", "map", where, "code"), (
                f"code '{code}' is shared: mark exactly one of its entries primary: true (found {len(primaries)})")


def _roles(m: SystemMapping) -> Found:
    roles = m.roles
    if "channel" in roles and m.quantity_policy is None:
        yield ("quantity_policy",), "a channel needs a quantity_policy (at least its basis)"
    if m.quantity_policy is not None and not roles & {"channel", "pull_client"} and _all_roles_set(m):
        yield ("quantity_policy",), "quantity_policy applies to channels and pull clients only; no location here is one"
    if "mirror" in roles and m.writes.mode != "delta":
        yield ("writes", "mode"), "a mirror receives moves, not figures: writes.mode must be delta"
    if m.connector in SELF_BUILDING:
        return
    covered = {t for spec in m.requests.values() for t in spec.on}
    for role in sorted(roles):
        for trigger in ROLE_TRIGGERS[role]:
            if trigger not in covered:
                yield ("requests",), f"a {role.replace('_', ' ')} needs a request on {trigger} events"


def _all_roles_set(m: SystemMapping) -> bool:
    return m.role is not None or all(e.role for e in m.locations.map)


def _writes(m: SystemMapping) -> Found:
    idem = m.writes.idempotency
    if idem.strategy in KEYED_STRATEGIES and idem.field is None:
        yield ("writes", "idempotency"), f"strategy {idem.strategy} needs field (where the event key goes)"


def _requests(m: SystemMapping) -> Found:
    owner: dict[str, str] = {}
    for name, spec in m.requests.items():
        for index, trigger in enumerate(spec.on):
            if trigger in owner:
                yield ("requests", name, "on", index), f"{trigger} events already go to request '{owner[trigger]}'"
            owner.setdefault(trigger, name)
        yield from _spec_fields(m, name, spec)


def _spec_fields(m: SystemMapping, name: str, spec: RequestSpec) -> Found:
    at = ("requests", name)
    for slot in (s for _, s in format_parts(spec.path) if s):
        yield from _field_usable(m, spec, slot, (*at, "path"))
    for part in ("query", "headers", "body"):
        for path, node in walk_dict(getattr(spec, part) or {}, (*at, part)):
            yield from _node_ok(m, spec, path, node)


def _node_ok(m: SystemMapping, spec: RequestSpec, path: tuple, node: Node) -> Found:
    kind = node.kind
    if kind == "lines":
        for _, inner in walk_dict(node.lines or {}, path):
            if inner.kind == "lines":
                yield path, "lines inside lines: a document has one level of lines"
                break
    if kind == "field" and node.field is not None:
        yield from _field_usable(m, spec, node.field, (*path, "field"))
    elif kind == "format" and node.format is not None:
        for slot in (s for _, s in format_parts(node.format) if s):
            yield from _field_usable(m, spec, slot, (*path, "format"))
    if kind in ("field", "const", "format") and node.transform:
        start = _start_type(node, spec)
        _, problem = chain_type(start, node.transform)
        if problem:
            yield (*path, "transform"), problem


def _start_type(node: Node, spec: RequestSpec) -> str:
    if node.kind == "format":
        return TEXT
    if node.kind == "const":
        return NUMBER if literal_number(node.const) else (TEXT if isinstance(node.const, str) else ANY)
    types = {found for t in spec.on if (found := field_type(node.field or "", t)) is not None}
    return types.pop() if len(types) == 1 else ANY


def _field_usable(m: SystemMapping, spec: RequestSpec, name: str, path: tuple) -> Found:
    if name.startswith(ATTR_PREFIX):
        attr = name[len(ATTR_PREFIX):]
        lacking = [e.internal for e in m.locations.map if attr not in e.attrs]
        if lacking:
            yield path, f"location attribute '{attr}' is not set on {', '.join(lacking)} (locations.map[].attrs)"
        return
    for trigger in spec.on:
        if field_type(name, trigger) is None:
            yield path, f"field '{name}' does not exist on {trigger} events"


def _pull(m: SystemMapping) -> Found:
    """A pull client is answered, never called: connector pull, a pull section, items mapped back."""
    pulls = "pull_client" in m.roles
    if pulls != (m.connector == "pull") or (pulls and m.roles != {"pull_client"}):
        yield ("connector",), "connector pull goes with role pull_client, on every location, and only there"
    if pulls and m.pull is None:
        yield (), "a pull client needs a pull section (at least its protocol)"
    if m.pull is not None and not pulls:
        yield ("pull",), "the pull section applies to pull clients (role pull_client) only"
    if pulls and m.items.transform:
        yield ("items", "transform"), ("a pull client maps the store's codes back to SKUs, which a transform "
                                       "cannot do: use items.overrides, items.lookup or items.variants")
    yield from _ship_to(m)
    yield from _variants(m)
    if m.pull is not None:
        yield from _pull_section(m.pull)


def _pull_section(pull: Pull) -> Found:
    if pull.protocol == "inventory_levels" and pull.token_secret is None:
        yield ("pull",), "inventory_levels needs token_secret: the NAME of the bearer token callers present"
    if pull.page_size > pull.max_ids:
        yield ("pull", "page_size"), f"page_size {pull.page_size} is larger than max_ids {pull.max_ids}"


def _ship_to(m: SystemMapping) -> Found:
    levels = m.pull is not None and m.pull.protocol == "inventory_levels"
    for index, entry in enumerate(m.locations.map):
        if entry.ship_to and not levels:
            yield ("locations", "map", index, "ship_to"), "ship_to applies to inventory_levels pull clients only"
        elif levels and not entry.ship_to:
            yield ("locations", "map", index), "an inventory_levels location needs ship_to (ISO 3166 codes it ships to)"


def _variants(m: SystemMapping) -> Found:
    realtime = m.pull is not None and m.pull.protocol == "realtime_inventory"
    if m.items.variants and not realtime:
        yield ("items", "variants"), "variants apply to realtime_inventory pull clients only"
    seen: dict[tuple, int] = {}
    for index, variant in enumerate(m.items.variants):
        key = (variant.code, frozenset(option_key(n, v) for n, v in variant.options.items()))
        if key in seen:
            yield ("items", "variants", index), (
                f"code '{variant.code}' with these options is already mapped (variants[{seen[key]}])")
        seen.setdefault(key, index)


def option_key(name: str, value: str) -> tuple[str, str]:
    """How store options compare: trimmed, case-insensitive (stores differ in how they spell them)."""
    return name.strip().casefold(), value.strip().casefold()
