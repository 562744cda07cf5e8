"""One typed settings object, read once at start.

Sources, highest first: command-line overrides, ``ERP_BRIDGE_*`` environment variables (nested
with ``__``, e.g. ``ERP_BRIDGE_HTTP__PORT``), files in systemd's ``$CREDENTIALS_DIRECTORY``
(``admin_token`` and one file per named secret), the YAML config file, defaults.
Relative paths in the config file are relative to the file's own folder.
"""
from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError, Problem
from .yamlpos import YamlDoc, error_message, format_path, load_yaml_file

ENV_PREFIX = "ERP_BRIDGE_"
PATH_KEYS = ("data_dir", "mappings_dir")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8470, ge=1, le=65535)
    #: request body cap for routes not in route_body_bytes; over it: 413 before the body is read
    max_body_bytes: int = Field(65536, ge=0)
    #: body caps by path prefix (the longest matching prefix wins)
    route_body_bytes: dict[str, int] = {"/webhooks/": 2 * 1024 * 1024}
    #: the request line and headers together; over it the request is refused (400)
    max_header_bytes: int = Field(16384, ge=1024, le=1024 * 1024)
    #: a request's headers must arrive within this, else the connection is closed (slowloris)
    header_timeout_s: float = Field(10.0, gt=0)
    #: a request's whole body must arrive within this, else 408
    body_timeout_s: float = Field(30.0, gt=0)
    #: requests in the application at once; more get 503 + Retry-After (health checks never do)
    max_concurrent_requests: int = Field(256, ge=1)
    #: open connections; more get 503 (keep it under the unit's LimitNOFILE)
    max_connections: int = Field(16384, ge=16)


class QueueSettings(_Section):
    #: ``sqlite:///path`` or ``postgresql://...``; empty means ``sqlite:///<data_dir>/queue.sqlite3``
    url: str = ""
    lease_s: float = Field(30.0, gt=0)
    batch_size: int = Field(64, ge=1, le=1000)
    #: done entries (and connector ledgers) are deleted after this many days; 0 keeps everything
    retention_days: float = Field(7.0, ge=0)


class WorkerSettings(_Section):
    count: int = Field(2, ge=1, le=64)
    poll_interval_s: float = Field(0.2, gt=0)
    shutdown_deadline_s: float = Field(20.0, ge=0)
    #: how often the Odoo outbox is polled when no nudge arrives
    outbox_poll_s: float = Field(2.0, gt=0)
    #: how often a channel's orders or history are polled when no notification wakes the poller
    #: (Square, PrestaShop, SFCC, and the other polled platforms): mind their rate limits
    channel_poll_s: float = Field(30.0, gt=0)
    #: ``erp-bridge worker`` (no HTTP service) serves Prometheus ``/metrics`` on this port, at
    #: ``http.host``; unset: the worker listens on nothing. ``serve`` has ``/metrics`` on its own port.
    metrics_port: int | None = Field(None, ge=1, le=65535)


class RetrySettings(_Section):
    max_attempts: int = Field(10, ge=1)
    base_s: float = Field(1.0, gt=0)
    cap_s: float = Field(600.0, gt=0)
    jitter: float = Field(0.5, ge=0, le=1)
    #: retryable failures a channel sale/restock may have before it dead-letters; 0 = never (it
    #: keeps retrying every cap_s and logs an ALERT once past max_attempts): a sale is not a
    #: notification, and the SoR must take it once it is back
    sale_max_attempts: int = Field(0, ge=0)


class ReconcileSettings(_Section):
    """Scheduled reconciliation (docs/reconciliation.md); 0 turns a run off."""

    #: a full run (every synced item at every channel location) this often
    every_s: float = Field(86400.0, ge=0)
    #: a light run over a sample of keys this often
    sample_every_s: float = Field(3600.0, ge=0)
    sample_size: int = Field(200, ge=1)
    #: scheduled runs correct what is safe to correct (through the queue), not only report it
    fix: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      extra="forbid", case_sensitive=False)

    data_dir: Path = Path("var")
    mappings_dir: Path = Path("mappings")
    http: HttpSettings = HttpSettings()
    queue: QueueSettings = QueueSettings()
    workers: WorkerSettings = WorkerSettings()
    retry: RetrySettings = RetrySettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: bearer token of the admin API; without it the admin API answers 503
    admin_token: SecretStr | None = None
    #: named secrets that mapping files refer to by name (values never live in mapping files)
    secrets: dict[str, SecretStr] = {}

    @property
    def queue_url(self) -> str:
        return self.queue.url or f"sqlite:///{self.data_dir / 'queue.sqlite3'}"

    def secret(self, name: str) -> SecretStr:
        try:
            return self.secrets[name]
        except KeyError:
            raise ConfigError(f"secret {name!r} is not configured: set {ENV_PREFIX}SECRETS__{name.upper()} "
                              f"or put a file named {name} in $CREDENTIALS_DIRECTORY") from None

    def secret_values(self) -> list[str]:
        values = [s.get_secret_value() for s in self.secrets.values()]
        if self.admin_token:
            values.append(self.admin_token.get_secret_value())
        return [v for v in values if v]

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, env_settings, CredentialsSource(settings_cls),
                YamlFileSource(settings_cls, _CONFIG_DOC.get()))


# The YAML source needs the parsed file at construction time; pydantic-settings builds sources
# inside __init__, so the document is handed over through a context variable for one load.
_CONFIG_DOC: ContextVar[YamlDoc | None] = ContextVar("erp_bridge_config_doc", default=None)


class YamlFileSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls, doc: YamlDoc | None):
        super().__init__(settings_cls)
        self.doc = doc

    def get_field_value(self, field, field_name):  # required by the base class; __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if self.doc is None:
            return {}
        data = self.doc.data
        if not isinstance(data, dict):
            raise ConfigError([self.doc.problem([], "the config file must be a mapping of keys")])
        base = Path(self.doc.file).resolve().parent
        return {k: (str((base / v).resolve()) if k in PATH_KEYS and isinstance(v, str) and not os.path.isabs(v) else v)
                for k, v in data.items()}


class CredentialsSource(PydanticBaseSettingsSource):
    """systemd credentials: ``admin_token`` and one file per named secret.

    The unit loads a whole folder with ``LoadCredential=secret:/etc/erp-bridge/credentials``,
    which systemd names ``secret_<file>``; a credential loaded one by one keeps its own name.
    """

    PREFIX = "secret_"

    def get_field_value(self, field, field_name):
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory or not os.path.isdir(directory):
            return {}
        values: dict[str, Any] = {"secrets": {}}
        for entry in sorted(Path(directory).iterdir()):
            if not entry.is_file():
                continue
            name = entry.name.removeprefix(self.PREFIX)
            text = entry.read_text(encoding="utf-8").strip()
            if name == "admin_token":
                values["admin_token"] = text
            else:
                values["secrets"][name] = text
        return values


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Read the settings once. Every problem is reported at once, with file, line and key."""
    doc = load_yaml_file(config) if config else None
    token = _CONFIG_DOC.set(doc)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = [_locate(doc, dict(err)) for err in exc.errors(include_url=False)]
        raise ConfigError(sorted(problems, key=lambda p: (p.file, p.line or 0, p.column or 0))) from None
    finally:
        _CONFIG_DOC.reset(token)


def _locate(doc: YamlDoc | None, err: dict) -> Problem:
    """Name the source that won: an environment variable, else the file's line, else 'settings'."""
    loc = list(err["loc"])
    message = error_message(err)
    for depth in range(len(loc), 0, -1):
        env = ENV_PREFIX + "__".join(str(p) for p in loc[:depth]).upper()
        if env in {k.upper() for k in os.environ}:
            return Problem(env, None, None, format_path(loc), message)
    if doc is not None and isinstance(doc.data, dict) and loc and loc[0] in doc.data:
        return doc.problem(loc, message, at_key=err["type"] == "extra_forbidden")
    return Problem(doc.file if doc else "settings", None, None, format_path(loc), message)


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective settings, secrets shown as '***' (safe to print and log)."""
    data = settings.model_dump(mode="json")
    if settings.admin_token is not None:
        data["admin_token"] = "***"
    data["secrets"] = {name: "***" for name in settings.secrets}
    data["queue"]["url"] = _mask_url(settings.queue_url)
    return data


def _mask_url(url: str) -> str:
    """postgresql://user:password@host/db -> postgresql://user:***@host/db"""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
