"""JSON lines to stdout, secrets redacted from the finished line (message, extras and tracebacks)."""
from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterable
from typing import TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

REDACTED = "***"
#: a secret is replaced where it stands as a value, not where it is a fragment of a longer word or
#: name: a user named ``bridge`` must not turn ``erp-bridge listening`` into ``erp-*** listening``
_WORD = r"[A-Za-z0-9_\-]"


class Redactor:
    """Replaces every configured secret value (and its JSON-escaped form) by ``***``."""

    def __init__(self, secrets: Iterable[str] = ()):
        variants = set()
        for secret in secrets:
            if secret:
                variants.add(secret)
                variants.add(json.dumps(secret)[1:-1])  # as it appears inside a JSON string
        # longest first, so a secret containing another is replaced whole
        ordered = sorted(variants, key=len, reverse=True)
        self._pattern = re.compile("|".join(
            f"(?<!{_WORD}){re.escape(v)}(?!{_WORD})" for v in ordered)) if ordered else None

    def __call__(self, text: str | None) -> str | None:
        if text is None or self._pattern is None:
            return text
        return self._pattern.sub(REDACTED, text)


def redactor(secrets: Iterable[str] = ()) -> Callable[[str | None], str | None]:
    return Redactor(secrets)


class RedactingJsonFormatter(JsonFormatter):
    """Formats a record as one JSON object, then removes every known secret value from it.

    Redacting the finished line (rather than chosen fields) also covers exception texts and
    extras that happen to echo a request, which is where secrets usually leak.
    """

    def __init__(self, secrets: Iterable[str] = (), **kwargs):
        kwargs.setdefault("timestamp", True)
        # uvicorn adds an ANSI-coloured copy of each message; JSON logs want the plain one only
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "color_message"])
        super().__init__("%(levelname)s %(name)s %(message)s", **kwargs)
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        self._redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record)) or ""


def setup_logging(level: str = "INFO", secrets: Iterable[str] = (), stream: TextIO | None = None) -> None:
    """Route all logging to one JSON handler on stdout (journald stores it as is)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(RedactingJsonFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel("WARNING")
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
