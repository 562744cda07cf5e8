"""A table of invalid mapping files, each with its exact error: file, line, column, key path, reason.

Each case is ``invalid/<id>.yaml`` (or a folder ``invalid/<id>/`` when several files or a lookup
table are involved), copied into ``<tmp>/mappings`` so the messages name ``mappings/...`` as the
integrator would see them. Every problem of a case must appear, and nothing else.
"""
from __future__ import annotations

import pytest

from erp_bridge.errors import MappingError
from erp_bridge.mapping.loader import load_mappings

from .conftest import HERE, copy_case

INVALID = HERE / "invalid"
#: cases loaded with an empty set of configured secrets (the others skip the secret check)
NO_SECRETS = {"secret_not_configured"}

CASES = [
    ('allocation_over_100', [
        'mappings/allocation_over_100.yaml:17:23 quantity_policy.allocation_percent: input should be less than or equal to 100',
    ]),
    ('auth_missing_secret', [
        "mappings/auth_missing_secret.yaml:9:5 connection.auth.secrets: basic auth needs a secret name for 'password'",
    ]),
    ('burst_without_rate', [
        'mappings/burst_without_rate.yaml:18:10 limits.burst: burst needs rate_per_s (a burst of what rate?)',
    ]),
    ('channel_without_policy', [
        'mappings/channel_without_policy.yaml:1:1 quantity_policy: a channel needs a quantity_policy (at least its basis)',
    ]),
    ('credential_header', [
        "mappings/credential_header.yaml:12:5 connection.headers.X-Api-Key: header 'X-Api-Key' carries credentials: name the secrets in connection.auth instead",
    ]),
    ('credentials_in_url', [
        'mappings/credentials_in_url.yaml:6:13 connection.base_url: credentials do not belong in the URL; name them in connection.auth.secrets',
    ]),
    ('duplicate_system', [
        "mappings/b.yaml:2:9 system: system 'shop' is already defined in mappings/a.yaml",
    ]),
    ('duplicate_yaml_key', [
        'mappings/duplicate_yaml_key.yaml:3:1 system: duplicate key (each key may appear once in a mapping)',
    ]),
    ('field_not_on_trigger', [
        "mappings/field_not_on_trigger.yaml:23:20 requests.push.body.sku.field: field 'move_id' does not exist on availability events",
    ]),
    ('format_with_spec', [
        'mappings/format_with_spec.yaml:23:21 requests.push.body.sku.format: only {field} slots are allowed in format text (no !conversions, :specs or {})',
    ]),
    ('lines_inside_lines', [
        'mappings/lines_inside_lines.yaml:23:7 requests.push.body.sku: lines inside lines: a document has one level of lines',
    ]),
    ('location_attr_not_set', [
        "mappings/location_attr_not_set.yaml:23:20 requests.push.body.sku.field: location attribute 'site' is not set on WH/Stock (locations.map[].attrs)",
    ]),
    ('location_mapped_twice', [
        "mappings/location_mapped_twice.yaml:15:17 locations.map[1].internal: internal location 'WH/Stock' is mapped twice (first at map[0])",
    ]),
    ('location_without_role', [
        'mappings/location_without_role.yaml:12:7 locations.map[0]: no role: set role here or at the top of the file',
    ]),
    ('lookup_bad_rows', [
        "mappings/items.csv:4 sku: duplicate SKU 'chair-blue' (first on line 2)",
        'mappings/items.csv:5: row has no sku: every row needs both sku and code',
        'mappings/items.csv:6: row has no code: every row needs both sku and code',
        'mappings/items.csv:7: row has no code: every row needs both sku and code',
    ]),
    ('lookup_file_missing', [
        'mappings/lookup_file_missing.yaml:19:11 items.lookup.file: lookup table not found: nope.csv',
    ]),
    ('many_to_one_unstated', [
        "mappings/many_to_one_unstated.yaml:14:13 locations.map[0].code: code 'main' is mapped from 2 internal locations: state locations.aggregation (sum, min or max)",
        "mappings/many_to_one_unstated.yaml:14:13 locations.map[0].code: code 'main' is shared: mark exactly one of its entries primary: true (found 0)",
    ]),
    ('mirror_absolute_without_requests', [
        'mappings/mirror_absolute_without_requests.yaml:16:9 writes.mode: a mirror receives moves, not figures: writes.mode must be delta',
        'mappings/mirror_absolute_without_requests.yaml:1:1 requests: a mirror needs a request on move_in events',
        'mappings/mirror_absolute_without_requests.yaml:1:1 requests: a mirror needs a request on move_out events',
    ]),
    ('missing_version', [
        'mappings/missing_version.yaml:1:1 version: required key is missing',
    ]),
    ('misspelt_nested_key', [
        'mappings/misspelt_nested_key.yaml:11:3 connection.timout_s: unknown key (check the spelling)',
    ]),
    ('negative_safety_buffer', [
        'mappings/negative_safety_buffer.yaml:17:18 quantity_policy.safety_buffer: input should be greater than or equal to 0',
    ]),
    ('node_unknown_key', [
        'mappings/node_unknown_key.yaml:23:13 requests.push.body.sku.feild: unknown key (check the spelling)',
    ]),
    ('node_with_two_kinds', [
        'mappings/node_with_two_kinds.yaml:23:7 requests.push.body.sku: a value needs exactly one of field, const, format, object, lines, list (found field, const)',
    ]),
    ('path_without_slash', [
        'mappings/path_without_slash.yaml:21:11 requests.push.path: path must start with / (it is appended to connection.base_url)',
    ]),
    ('secret_not_configured', [
        "mappings/secret_not_configured.yaml:10:14 connection.auth.secrets.token: secret 'custom_token' is not configured: set ERP_BRIDGE_SECRETS__CUSTOM_TOKEN or put a file named custom_token in $CREDENTIALS_DIRECTORY",
    ]),
    ('secret_value_as_name', [
        'mappings/secret_value_as_name.yaml:10:14 connection.auth.secrets.token: expected a secret name (lower-case letters, digits and _, e.g. shopify_token), not a secret value: values come from settings, the environment or $CREDENTIALS_DIRECTORY',
    ]),
    ('token_shaped_secret_name', [  # issue 9: lower-case hex passes the name pattern; still a token
        'mappings/token_shaped_secret_name.yaml:10:14 connection.auth.secrets.token: this looks like a secret value (a token), not a secret name: put the value in settings, the environment or $CREDENTIALS_DIRECTORY and name it here, e.g. shopify_token; revoke the token if this file was shared',
    ]),
    ('status_key_not_http', [
        'mappings/status_key_not_http.yaml:19:5 writes.on_status.600: expected an HTTP status such as "409" or a class such as "5xx", got \'600\'',
    ]),
    ('status_key_unquoted', [
        'mappings/status_key_unquoted.yaml:19:5 writes.on_status.429: expected a string, got integer 429; quote it to keep it as text',
    ]),
    ('stray_yml', [
        'mappings/other.yml: mapping files end in .yaml; rename it or it is ignored',
    ]),
    ('transform_type_mismatch', [
        "mappings/transform_type_mismatch.yaml:23:30 requests.push.body.sku.transform: transform 'upper' takes text, but gets number",
    ]),
    ('trigger_in_two_requests', [
        "mappings/trigger_in_two_requests.yaml:25:10 requests.again.on[0]: availability events already go to request 'push'",
    ]),
    ('two_systems_of_record', [
        "mappings/sap_b1.yaml:10:18 locations.map[0].internal: location 'WH/Stock' already has a system of record: odoo",
    ]),
    ('unknown_connector', [
        "mappings/unknown_connector.yaml:3:12 connector: unknown connector 'sap' (known: sap_b1, netsuite, dynamics365, dynamics365_iv, zoho_inventory, odoo, shopify, square, woocommerce, bigcommerce, ordergroove, sfcc, prestashop, lightspeed_x, clover, lightspeed_r, cin7_core, amazon_sp, magento, http_json, pull)",
    ]),
    ('unknown_field', [
        "mappings/unknown_field.yaml:23:20 requests.push.body.sku.field: unknown field 'itm' (known: channel, direction, from_location, id, item, item_code, key, kind, line, location, location_code, low_stock, move_id, now, occurred_at, order, origin_system, previous, quantity, reason, reference, signed_quantity, system, to_location, uom, or attr.NAME for a location attribute)",
    ]),
    ('unknown_role', [
        "mappings/unknown_role.yaml:4:7 role: input should be 'system_of_record', 'mirror', 'channel' or 'pull_client'",
    ]),
    ('unknown_top_key', [
        'mappings/unknown_top_key.yaml:17:1 timeout: unknown key (check the spelling)',
    ]),
    ('unknown_transform', [
        "mappings/unknown_transform.yaml:18:15 items.transform[0]: unknown transform 'uppercase' (known: upper, lower, strip, string, abs, negate, int, int_text, int_floor, date, datetime_utc, unix_seconds)",
    ]),
    ('unquoted_date_constant', [
        'mappings/unquoted_date_constant.yaml:23:12 requests.push.body.sku: got the date 2025-01-31; quote it to send it as text',
    ]),
    ('unquoted_location_code', [
        'mappings/unquoted_location_code.yaml:14:13 locations.map[0].code: expected a string, got integer 42; quote it to keep it as text',
    ]),
    ('unquoted_sku_leading_zero', [
        'mappings/unquoted_sku_leading_zero.yaml:19:12 items.overrides[0].sku: expected a string, got integer 007; quote it to keep it as text',
    ]),
    ('webhook_default_location_unmapped', [
        "mappings/webhook_default_location_unmapped.yaml:18:1 webhooks: default_location 'gid://shopify/Location/2' is not a code in locations.map (codes: gid://shopify/Location/1)",
    ]),
    ('wrong_version', [
        'mappings/wrong_version.yaml:1:10 version: unsupported mapping version 2; this bridge reads version 1',
    ]),
    ('yaml_syntax', [
        "mappings/yaml_syntax.yaml:14:15: invalid YAML: while parsing a flow sequence expected ',' or ']', but got ':'",
    ]),
    # --- pull clients (issue 6) ---
    ('pull_client_without_pull', [
        'mappings/pull_client_without_pull.yaml:1:1: a pull client needs a pull section (at least its protocol)',
    ]),
    ('ship_to_unknown_country', [
        "mappings/ship_to_unknown_country.yaml:12:21 locations.map[0].ship_to[1]: 'XX' is not an ISO 3166-1 alpha-2 country code, e.g. SE, DE, US",
        "mappings/ship_to_unknown_country.yaml:12:25 locations.map[0].ship_to[2]: 'se' is not an ISO 3166-1 alpha-2 country code (upper case), e.g. SE, DE, US",
    ]),
    ('inventory_levels_without_token_or_ship_to', [
        'mappings/inventory_levels_without_token_or_ship_to.yaml:10:7 locations.map[0]: an inventory_levels location needs ship_to (ISO 3166 codes it ships to)',
        'mappings/inventory_levels_without_token_or_ship_to.yaml:12:1 pull: inventory_levels needs token_secret: the NAME of the bearer token callers present',
        'mappings/inventory_levels_without_token_or_ship_to.yaml:14:14 pull.page_size: page_size 500 is larger than max_ids 100',
    ]),
    ('pull_client_with_item_transform', [
        "mappings/pull_client_with_item_transform.yaml:9:3 items.transform: a pull client maps the store's codes back to SKUs, which a transform cannot do: use items.overrides, items.lookup or items.variants",
    ]),
    ('variant_mapped_twice', [
        "mappings/variant_mapped_twice.yaml:13:7 items.variants[1]: code 'TSHIRT' with these options is already mapped (variants[0])",
    ]),
    ('pull_bad_message_and_timeout', [
        'mappings/pull_bad_message_and_timeout.yaml:16:15 pull.messages.in_stock: a message is sent as an HTTP header: use Latin-1 characters only',
        'mappings/pull_bad_message_and_timeout.yaml:14:19 pull.live_timeout_s: input should be greater than 0',
    ]),
    ('pull_connector_on_a_channel', [
        'mappings/pull_connector_on_a_channel.yaml:1:1 requests: a channel needs a request on availability events',
        'mappings/pull_connector_on_a_channel.yaml:3:12 connector: connector pull goes with role pull_client, on every location, and only there',
        'mappings/pull_connector_on_a_channel.yaml:14:1 pull: the pull section applies to pull clients (role pull_client) only',
        'mappings/pull_connector_on_a_channel.yaml:12:7 locations.map[0].ship_to: ship_to applies to inventory_levels pull clients only',
    ]),
]


def test_every_case_has_a_fixture_and_every_fixture_a_case():
    on_disk = {p.stem for p in INVALID.iterdir() if p.suffix in ("", ".yaml")}
    assert on_disk == {name for name, _ in CASES}
    assert len(CASES) >= 25


@pytest.mark.parametrize("name, expected", CASES, ids=[name for name, _ in CASES])
def test_invalid_mapping_is_reported_exactly(name, expected, tmp_path):
    case = INVALID / name if (INVALID / name).is_dir() else INVALID / f"{name}.yaml"
    directory = copy_case(case, tmp_path)
    with pytest.raises(MappingError) as caught:
        load_mappings(directory, secret_names=set() if name in NO_SECRETS else None)
    assert [str(p) for p in caught.value.problems] == expected


@pytest.mark.parametrize("name, leaked", [
    ("secret_value_as_name", "sk_live_51HqZ0a9Bx"),
    ("token_shaped_secret_name", "shpat_0123456789abcdef0123456789abcdef"),
    ("credentials_in_url", "hunter2"),
    ("credential_header", "abc123"),
])
def test_errors_never_repeat_a_credential_typed_into_the_file(name, leaked, tmp_path):
    directory = copy_case(INVALID / f"{name}.yaml", tmp_path)
    assert leaked in (directory / f"{name}.yaml").read_text()  # the case really holds it
    with pytest.raises(MappingError) as caught:
        load_mappings(directory)
    assert leaked not in str(caught.value)
