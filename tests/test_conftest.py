"""tests/conftest.py's guard against CPython 3.11's shared AST depth counter (see there)."""
from __future__ import annotations

import ast
import sys
import threading
import traceback

import pytest


def formatted() -> str:
    try:
        {}["a"]["b"]
    except KeyError:
        return traceback.format_exc()
    raise AssertionError("unreachable")


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="only CPython 3.11 parses traceback lines in every thread")
def test_tracebacks_formatted_off_the_main_thread_parse_nothing(monkeypatch):
    parsed_in, parse = [], ast.parse
    monkeypatch.setattr(ast, "parse", lambda *a, **k: (parsed_in.append(threading.current_thread().name),
                                                       parse(*a, **k))[1])
    other: dict[str, str] = {}
    thread = threading.Thread(target=lambda: other.setdefault("trace", formatted()), name="worker")
    thread.start()
    thread.join()
    assert "~^^^^^" in formatted() and "~" not in other["trace"]  # markers in the main thread only
    assert set(parsed_in) == {"MainThread"}
