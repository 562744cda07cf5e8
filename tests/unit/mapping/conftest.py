"""Shared helpers for the mapping tests: the repo's example mappings, and a fixed clock and ids."""
from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MAPPINGS = REPO / "mappings"
HERE = Path(__file__).resolve().parent
NOW = datetime(2025, 3, 14, 10, 0, tzinfo=UTC)


def fixed_ids():
    """new_id for tests: predictable, distinct, UUID-shaped."""
    counter = iter(range(1, 10_000))
    return lambda: f"6f1c0d2e-0000-4000-8000-{next(counter):012d}"


def copy_case(case: Path, tmp_path: Path) -> Path:
    """Copy an invalid case (one .yaml, or a folder) into <tmp>/mappings, as errors name it."""
    target = tmp_path / "mappings"
    if case.is_dir():
        shutil.copytree(case, target)
    else:
        target.mkdir()
        shutil.copy(case, target / case.name)
    return target


@pytest.fixture(scope="session")
def example_set():
    from erp_bridge.mapping.loader import load_mappings
    return load_mappings(MAPPINGS)


@pytest.fixture(scope="session", autouse=True)
def netsuite_wsdl_cached(tmp_path_factory):
    """Previews of the NetSuite example load the account's WSDL; here it comes from the disk cache,
    seeded from ../shared/specs, as after a first start (no network in tests)."""
    import erp_bridge.connectors.netsuite as netsuite
    from erp_bridge.mapping.schema import SystemMapping
    from erp_bridge.yamlpos import load_yaml_file
    from tests.fakes.netsuite import seed_wsdl_cache

    if not (REPO.parent / "shared" / "specs" / "netsuite-wsdl-2023_2").exists():
        yield
        return
    cache = tmp_path_factory.mktemp("netsuite-wsdl")
    seed_wsdl_cache(cache, SystemMapping.model_validate(load_yaml_file(MAPPINGS / "netsuite.yaml").data).connection.wsdl)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(netsuite, "DEFAULT_CACHE", cache)
        yield
