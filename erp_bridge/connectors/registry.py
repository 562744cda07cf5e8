"""Connector kinds -> factories. A connector module registers itself with one line below.

A factory is ``(system_mapping, secrets, lookups) -> Connector``; ``secrets`` is the settings
object (``.secret(name)``) or a plain mapping of secret names to values; ``lookups`` the mapping
set's item tables by system name (``None`` when the caller has none).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from ..errors import ConfigError
from .base import Connector

Factory = Callable[[Any, Any, Any], Connector]
_FACTORIES: dict[str, Factory] = {}


def register(kind: str, factory: Factory) -> None:
    _FACTORIES[kind] = factory


def kinds() -> list[str]:
    return sorted(_FACTORIES)


def build(system_mapping: Any, secrets: Any, lookups: Any = None) -> Connector:
    factory = _FACTORIES.get(system_mapping.connector)
    if factory is None:
        raise ConfigError(f"system {system_mapping.system}: no connector {system_mapping.connector!r} "
                          f"(available: {', '.join(kinds())})")
    return factory(system_mapping, secrets, lookups)


def secret_value(secrets: Any, name: str) -> str:
    """The value of a named secret, for a factory; never log or echo it."""
    value = secrets.secret(name) if hasattr(secrets, "secret") else _lookup(secrets, name)
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def _lookup(secrets: Mapping[str, Any], name: str) -> Any:
    try:
        return secrets[name]
    except KeyError:
        raise ConfigError(f"secret {name!r} is not configured") from None


def _lazy(module: str, factory: str) -> Factory:
    """Import a connector module only when a mapping uses it (and without import cycles)."""
    def build_one(system_mapping: Any, secrets: Any, lookups: Any = None) -> Connector:
        from importlib import import_module
        return getattr(import_module(module, __package__), factory)(system_mapping, secrets, lookups)
    return build_one


register("http_json", _lazy(".http_json", "from_mapping"))
register("shopify", _lazy(".shopify.connector", "from_mapping"))
register("sap_b1", _lazy(".sap_b1", "from_mapping"))
register("odoo", _lazy(".odoo", "OdooConnector"))
register("pull", _lazy("..sync.pull", "client_from_mapping"))
