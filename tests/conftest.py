"""What every test shares."""
from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Iterator

import pytest

if sys.version_info[:2] == (3, 11):
    # CPython 3.11 keeps the AST constructor's recursion depth in state every thread shares
    # (gh-106905): two threads in ast.parse at once can fail with "SystemError: AST constructor
    # recursion depth mismatch". pytest's assertion rewriter parses each plugin module it imports
    # lazily (schemathesis, hypothesis) in the main thread, while the runtime's threads log
    # exceptions, and 3.11 parses every traceback line for its ^^^ markers (stop 16's red CI).
    # In tests, tracebacks formatted off the main thread go without those markers.
    _anchors = traceback._extract_caret_anchors_from_line_segment  # type: ignore[attr-defined]

    def _anchors_in_main_thread_only(segment: str):  # type: ignore[no-untyped-def]
        return _anchors(segment) if threading.current_thread() is threading.main_thread() else None

    traceback._extract_caret_anchors_from_line_segment = _anchors_in_main_thread_only  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that runs a CLI command in this process (``erp_bridge.cli.main``) routes the root
    logger to the ``sys.stderr`` pytest captured for that test (logs.setup_logging). Left there,
    a later test's log line goes to that closed capture and prints "--- Logging error ---"."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
