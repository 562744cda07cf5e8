"""JSON lines to stdout, secrets redacted from the finished line (message, extras and tracebacks)."""
from __future__ import annotations

import json
import logging
import sys
from typing import Iterable, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

REDACTED = "***"


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
        variants = set()
        for secret in secrets:
            if secret:
                variants.add(secret)
                variants.add(json.dumps(secret)[1:-1])  # as it appears inside a JSON string
        # longest first, so a secret containing another is replaced whole
        self._secrets = sorted(variants, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for secret in self._secrets:
            line = line.replace(secret, REDACTED)
        return line


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
