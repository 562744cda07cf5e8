"""Golden files: for every example mapping, an event in -> the exact request(s) out.

``golden/<system>-<case>.event.json`` is the input, ``golden/<system>-<case>.expected.txt`` the
preview text (method, URL, headers with credentials masked, body). To rewrite the expected files
after a deliberate change, opt in with ``UPDATE_GOLDEN=1``; the rewritten cases then report as
skipped, so a regeneration never passes unnoticed. Review the diff before committing it.
"""
from __future__ import annotations

import os

import pytest

from erp_bridge.mapping.preview import preview

from .conftest import HERE, MAPPINGS, NOW, fixed_ids

GOLDEN = HERE / "golden"
EVENTS = sorted(GOLDEN.glob("*.event.json"))
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _case(path):
    return path.name.removesuffix(".event.json")


@pytest.mark.parametrize("event_file", EVENTS, ids=[_case(p) for p in EVENTS])
def test_event_maps_to_the_golden_request(event_file):
    system = _case(event_file).split("-")[0]
    expected_file = GOLDEN / f"{_case(event_file)}.expected.txt"
    actual = preview(system, event_file, MAPPINGS, now=NOW, new_id=fixed_ids())
    if UPDATE:
        expected_file.write_text(actual, encoding="utf-8")
        pytest.skip(f"rewrote {expected_file.name}: review the diff")
    assert expected_file.exists(), f"no golden file yet: run with UPDATE_GOLDEN=1 and review {expected_file.name}"
    assert actual == expected_file.read_text(encoding="utf-8")


def test_every_example_mapping_has_a_golden_case(example_set):
    covered = {_case(p).split("-")[0] for p in EVENTS}
    pull = {p.name.split("-")[0] for p in (GOLDEN / "pull").glob("*.request.txt")}  # test_pull_golden.py
    assert covered | pull == set(example_set.systems)


def test_every_golden_file_has_its_event():
    expected = {p.name.removesuffix(".expected.txt") for p in GOLDEN.glob("*.expected.txt")}
    assert expected == {_case(p) for p in EVENTS}
