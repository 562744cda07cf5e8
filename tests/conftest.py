"""What every test shares."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


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
