"""Pull unit fixtures: the example mappings, optionally with the pull section changed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from erp_bridge.yamlpos import load_yaml_file

from .harness import REPO, make_app


def mappings_with(tmp_path, system: str = "yahoo_store", **pull) -> Path:
    """The example mappings with ``system``'s pull settings overridden (e.g. display=...)."""
    target = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", target)
    path = target / f"{system}.yaml"
    data = load_yaml_file(path).data  # the bridge's YAML reading (NO stays the country Norway)
    data["pull"].update(pull)
    path.write_text(json.dumps(data, default=float))  # JSON is YAML; Decimals become numbers
    return target


@pytest.fixture
def pull_app(tmp_path):
    """make(**yahoo_store pull overrides) -> harness with chair-blue 4 + 2 in stock (5 shown)."""
    def make(**pull):
        h = make_app(tmp_path, mappings_with(tmp_path, **pull) if pull else REPO / "mappings")
        h.sor.free.update({("chair-blue", "WH/Stock"): 4, ("chair-blue", "WH2/Stock"): 2})
        return h
    return make
