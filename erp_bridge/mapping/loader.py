"""Load every mapping file of a directory and report every problem of every file at once.

Order of work per file: YAML (syntax, duplicate keys) -> schema (pydantic, all errors) -> checks
that need the whole file -> lookup tables; then checks across files (one system of record per
location, unique system names). Nothing is written: files are only read, data only copied.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ..errors import ConfigError, MappingError, Problem
from ..yamlpos import YamlDoc, load_yaml_file, problems_from_validation
from .checks import check_mapping
from .lookups import LookupTable, load_lookup
from .schema import SystemMapping


@dataclass
class MappingSet:
    systems: dict[str, SystemMapping] = field(default_factory=dict)
    #: item lookup table per system name (systems without one are absent)
    lookups: dict[str, LookupTable] = field(default_factory=dict)
    #: the file each system came from, as errors name it
    files: dict[str, str] = field(default_factory=dict)

    def system_of_record(self, location: str) -> SystemMapping:
        """The system holding the true stock of internal ``location``."""
        found = [m for m in self.systems.values() if m.role_of(location) == "system_of_record"]
        if len(found) != 1:
            raise MappingError(f"location '{location}' has {len(found)} systems of record; it needs exactly one")
        return found[0]

    def channels(self) -> list[SystemMapping]:
        return [m for m in self.systems.values() if "channel" in m.roles]

    def mirrors(self) -> list[SystemMapping]:
        return [m for m in self.systems.values() if "mirror" in m.roles]


def load_mappings(directory: Path, secret_names: Collection[str] | None = None) -> MappingSet:
    """Every ``*.yaml`` under ``directory``; raises MappingError with all problems of all files."""
    directory = Path(directory)
    label = directory.name or str(directory)
    if not directory.is_dir():
        raise MappingError([Problem(label, None, None, "", "mapping directory not found")])
    files = sorted(directory.rglob("*.yaml"))
    problems = [Problem(f"{label}/{p.relative_to(directory)}", None, None, "",
                        "mapping files end in .yaml; rename it or it is ignored") for p in sorted(directory.rglob("*.yml"))]
    if not files:
        problems.append(Problem(label, None, None, "", "no mapping files (*.yaml) here"))
    named = [(p, f"{label}/{p.relative_to(directory)}") for p in files]
    return _load(named, secret_names, problems)


def load_mapping_files(paths: Iterable[Path], secret_names: Collection[str] | None = None) -> MappingSet:
    """Named files only (``mappings check FILE...``); cross-file checks run among these files."""
    named = [(Path(p), display_name(Path(p))) for p in paths]
    return _load(named, secret_names, [])


def display_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _load(named: list[tuple[Path, str]], secret_names, problems: list[Problem]) -> MappingSet:
    result, docs, tables = MappingSet(), dict[str, YamlDoc](), dict[str, LookupTable]()
    for path, display in named:
        mapping, doc = _load_one(path, display, secret_names, problems)
        if mapping is None:
            continue
        if mapping.system in result.systems:
            problems.append(doc.problem(["system"], f"system '{mapping.system}' is already defined in "
                                                     f"{result.files[mapping.system]}"))
            continue
        result.systems[mapping.system], result.files[mapping.system] = mapping, display
        docs[mapping.system] = doc
        _attach_lookup(result, mapping, path, doc, tables, problems)
    problems.extend(_cross_checks(result, docs))
    if problems:
        raise MappingError(problems)
    return result


def _load_one(path: Path, display: str, secret_names, problems: list[Problem]):
    try:
        doc = load_yaml_file(path, display)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None, None
    if not isinstance(doc.data, dict):
        problems.append(doc.problem([], "a mapping file is a mapping of keys (version, system, ...)"))
        return None, doc
    try:
        mapping = SystemMapping.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(problems_from_validation(doc, exc))
        return None, doc
    found = [doc.problem(path_, message) for path_, message in check_mapping(mapping, secret_names)]
    problems.extend(found)
    return (None if found else mapping), doc


def _attach_lookup(result: MappingSet, mapping: SystemMapping, path: Path, doc: YamlDoc,
                   tables: dict, problems: list[Problem]) -> None:
    spec = mapping.items.lookup
    if spec is None:
        return
    csv_path = (path.parent / spec.file).resolve()
    key = (csv_path, spec.sku_column, spec.code_column)
    if key not in tables:
        display = str(Path(doc.file).parent / spec.file)
        tables[key] = load_lookup(csv_path, display, spec.sku_column, spec.code_column)
    table, table_problems = tables[key]
    if table is None and table_problems and table_problems[0].line is None:
        # the file itself is unusable: point at the mapping key that names it
        problems.append(doc.problem(["items", "lookup", "file"], f"{table_problems[0].message}: {spec.file}"))
        return
    problems.extend(p for p in table_problems if p not in problems)
    if table is not None:
        result.lookups[mapping.system] = table


def _cross_checks(result: MappingSet, docs: dict[str, YamlDoc]) -> list[Problem]:
    problems, owner = list[Problem](), dict[str, str]()
    for system, mapping in result.systems.items():
        for index, entry in enumerate(mapping.locations.map):
            if mapping.role_of(entry.internal) != "system_of_record":
                continue
            if entry.internal in owner:
                problems.append(docs[system].problem(["locations", "map", index, "internal"], (
                    f"location '{entry.internal}' already has a system of record: {owner[entry.internal]}")))
            owner.setdefault(entry.internal, system)
    if owner:  # a partial check without any system of record cannot judge coverage
        problems.extend(_uncovered(result, docs, owner))
    return problems


def _uncovered(result: MappingSet, docs: dict[str, YamlDoc], owner: dict[str, str]) -> Iterable[Problem]:
    for system, mapping in result.systems.items():
        for index, entry in enumerate(mapping.locations.map):
            if entry.internal not in owner:
                yield docs[system].problem(["locations", "map", index, "internal"],
                                           f"no system of record maps location '{entry.internal}'")
