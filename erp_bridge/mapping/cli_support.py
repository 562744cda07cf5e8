"""What ``erp-bridge mappings check|schema|preview`` call; cli.py only parses arguments and prints."""
from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from ..errors import MappingError, Problem
from .loader import MappingSet, load_mapping_files, load_mappings
from .preview import preview  # noqa: F401  (re-exported for the CLI)
from .schema import SystemMapping

DEFAULT_DIR = Path("mappings")
SCHEMA_ID = "https://erp-bridge.invalid/mappings/schema.json"


def check(paths: list[Path], secret_names: Collection[str] | None = None) -> list[str]:
    """Validate directories and files; lines to print, or MappingError with every problem."""
    paths = [Path(p) for p in paths] or [DEFAULT_DIR]
    problems: list[Problem] = []
    lines: list[str] = []
    files = [p for p in paths if not p.is_dir()]
    for target in [p for p in paths if p.is_dir()] + ([files] if files else []):
        try:
            loaded = load_mapping_files(target, secret_names) if isinstance(target, list) \
                else load_mappings(target, secret_names)
        except MappingError as exc:
            problems.extend(exc.problems)
            continue
        lines.extend(summary(loaded))
    if problems:
        raise MappingError(problems)
    return lines + [f"ok: {len(lines)} mapping file(s)"]


def summary(loaded: MappingSet) -> list[str]:
    out = []
    for name, mapping in loaded.systems.items():
        roles = ", ".join(sorted(mapping.roles)) or "no role"
        out.append(f"{loaded.files[name]}: {name} ({mapping.connector}; {roles}; "
                   f"{len(mapping.locations.map)} location(s), {len(mapping.requests)} request(s))")
    return out


def schema_document() -> dict:
    schema = SystemMapping.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "erp-bridge mapping file", **schema}


def write_schema(path: Path) -> None:
    """Write the JSON Schema editors use (each mapping file's yaml-language-server modeline)."""
    Path(path).write_text(json.dumps(schema_document(), indent=2) + "\n", encoding="utf-8")
