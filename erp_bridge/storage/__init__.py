"""One storage URL for every durable thing the bridge keeps: queue entries and attempts, pushed
figures and connector ledgers.

``sqlite:///path`` is the embedded default (one file, one host); ``postgresql://...`` is one
database shared by every process on every host. Because all of it moves with the URL, a ledger
that makes posting to SAP exactly-once is seen by every host that may post, and a pushed figure
by every host that may push.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from ..errors import ConfigError

SQLITE, POSTGRES = "sqlite", "postgresql"
#: URL scheme -> engine (``postgres://`` is the libpq alias of ``postgresql://``)
SCHEMES = {"sqlite": SQLITE, "postgresql": POSTGRES, "postgres": POSTGRES}


def engine(url: str) -> str:
    """The engine a storage URL names; ConfigError (without the URL's password) otherwise."""
    scheme = url.partition("://")[0]
    if "://" not in url or scheme not in SCHEMES:
        raise ConfigError(f"queue url {redacted(url)!r}: unsupported scheme {scheme!r} "
                          f"(supported: sqlite:///<path to file>, postgresql://user@host/database)")
    return SCHEMES[scheme]


def sqlite_path(url: str) -> Path:
    """The file of ``sqlite:///path`` (SQLAlchemy's convention: three slashes and a relative path,
    four for an absolute one)."""
    path = url.removeprefix("sqlite:///")
    if not path or path == url:
        raise ConfigError(f"queue url {url!r}: expected sqlite:///<path to file>")
    return Path(path)


def redacted(url: str) -> str:
    """postgresql://user:password@host/db -> postgresql://user:***@host/db (safe to log)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


_fast = msgspec.json.Decoder().decode
_exact = json.JSONDecoder().decode


def json_loads(text: str | bytes) -> Any:
    """``json.loads(text)`` for what the bridge stored itself (a queue entry's payload, read for
    every leased entry on either engine). msgspec's C decoder reads a payload in about a quarter
    of the time and builds the same objects; what it refuses and ``json`` reads (NaN, Infinity,
    numbers past the float range, lone surrogates) is read by ``json``, so every stored value
    reads back exactly as before (issue 15)."""
    try:
        return _fast(text)
    except msgspec.MsgspecError:
        return _exact(text if isinstance(text, str) else str(text, "utf-8"))
