"""Settings: file, environment and systemd credentials; every error located; secrets masked."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from erp_bridge.errors import ConfigError
from erp_bridge.settings import load_settings, masked_dump

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os
    for key in list(os.environ):
        if key.startswith("ERP_BRIDGE_") or key == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(text)
    return path


def test_example_config_is_valid_and_paths_are_relative_to_the_file():
    settings = load_settings(REPO / "config" / "example.yaml")
    assert settings.mappings_dir == REPO / "mappings"
    assert settings.queue_url == f"sqlite:///{REPO / 'var' / 'queue.sqlite3'}"
    assert settings.http.host == "127.0.0.1"


def test_defaults_without_a_file():
    settings = load_settings(None)
    assert (settings.http.port, settings.workers.count, settings.retry.max_attempts) == (8470, 2, 10)


@pytest.mark.parametrize("text, expected", [
    pytest.param("http:\n  port: eighty\n", ["bridge.yaml:2:9 http.port: expected an integer, got string 'eighty'"],
                 id="wrong-type"),
    pytest.param("http:\n  prot: 1\n", ["bridge.yaml:2:3 http.prot: unknown key (check the spelling)"],
                 id="unknown-key"),
    pytest.param("workers:\n  count: 0\n", ["bridge.yaml:2:10 workers.count: input should be greater than or equal to 1"],
                 id="out-of-range"),
    pytest.param("http: {port: 1}\nhttp: {port: 2}\n",
                 ["bridge.yaml:2:1 http: duplicate key (each key may appear once in a mapping)"], id="duplicate-key"),
    pytest.param("http:\n  port: [1\n", ["bridge.yaml:3:1: invalid YAML: while parsing a flow sequence expected ',' or ']', but got '<stream end>'"],
                 id="syntax"),
    pytest.param("log_level: LOUD\nretry:\n  jitter: 2\n",
                 ["bridge.yaml:1:12 log_level: input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'",
                  "bridge.yaml:3:11 retry.jitter: input should be less than or equal to 1"], id="all-errors-at-once"),
    pytest.param("- a\n- b\n", ["bridge.yaml:1:1: the config file must be a mapping of keys"], id="not-a-mapping"),
])
def test_malformed_config_names_file_line_and_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    assert [str(p).replace(str(tmp_path) + "/", "") for p in err.value.problems] == expected


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_environment_overrides_file_and_errors_name_the_variable(tmp_path, monkeypatch):
    path = write(tmp_path, "http:\n  port: 9000\n")
    monkeypatch.setenv("ERP_BRIDGE_HTTP__PORT", "9100")
    assert load_settings(path).http.port == 9100
    monkeypatch.setenv("ERP_BRIDGE_HTTP__PORT", "x")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value) == "ERP_BRIDGE_HTTP__PORT http.port: expected an integer, got string 'x'"


def test_command_line_overrides_win(tmp_path, monkeypatch):
    monkeypatch.setenv("ERP_BRIDGE_HTTP__PORT", "9100")
    assert load_settings(write(tmp_path, "http: {port: 9000}\n"), http={"port": 9200}).http.port == 9200


def test_secrets_from_env_and_systemd_credentials(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "secret_admin_token").write_text("adm-token-123\n")
    (creds / "secret_sap_password").write_text("s3cr3t-sap")
    (creds / "zoho_refresh").write_text("zoho-refresh-456")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("ERP_BRIDGE_SECRETS__SHOPIFY_TOKEN", "shpat_abc")
    settings = load_settings(None)
    assert settings.admin_token.get_secret_value() == "adm-token-123"
    assert settings.secret("sap_password").get_secret_value() == "s3cr3t-sap"
    assert settings.secret("zoho_refresh").get_secret_value() == "zoho-refresh-456"
    assert settings.secret("shopify_token").get_secret_value() == "shpat_abc"
    dumped = json.dumps(masked_dump(settings))
    for value in ("adm-token-123", "s3cr3t-sap", "zoho-refresh-456", "shpat_abc"):
        assert value not in dumped and value not in repr(settings) and value not in str(settings)


def test_unknown_secret_says_how_to_set_it():
    with pytest.raises(ConfigError, match="set ERP_BRIDGE_SECRETS__NETSUITE_TOKEN or put a file named netsuite_token"):
        load_settings(None).secret("netsuite_token")


def test_database_password_in_queue_url_is_masked(tmp_path):
    settings = load_settings(write(tmp_path, "queue:\n  url: postgresql://bridge:pw-789@db/bridge\n"))
    assert masked_dump(settings)["queue"]["url"] == "postgresql://bridge:***@db/bridge"
