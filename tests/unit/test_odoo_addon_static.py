"""Checks on the Odoo module that run in CI without Odoo.

XML well-formedness, manifest sanity, an access rule for every stored model, no
cr.commit(), and pylint-odoo's mandatory rules (OCA's .pylintrc-mandatory set, limited
to the rules the installed pylint-odoo knows; XML/CSV/PO rules moved to
oca-pre-commit-hooks in pylint-odoo 9, and the XML checks below stand in for them).
"""

from __future__ import annotations

import ast
import csv
import importlib.util
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree

import pytest

MODULE = Path(__file__).resolve().parents[2] / "odoo_addon" / "stock_sync_bridge"
AUTHOR = "Stock Sync contributors"

# OCA's mandatory pylint-odoo rules (oca-addons-repo-template, .pylintrc-mandatory, 15+)
MANDATORY = ["anomalous-backslash-in-string", "api-one-deprecated", "api-one-multi-together", "assignment-from-none", "attribute-deprecated", "class-camelcase", "dangerous-default-value", "dangerous-view-replace-wo-priority", "development-status-allowed", "duplicate-id-csv", "duplicate-key", "duplicate-xml-fields", "duplicate-xml-record-id", "eval-referenced", "eval-used", "incoherent-interpreter-exec-perm", "license-allowed", "manifest-author-string", "manifest-deprecated-key", "manifest-required-author", "manifest-required-key", "manifest-version-format", "method-compute", "method-inverse", "method-required-super", "method-search", "openerp-exception-warning", "pointless-statement", "pointless-string-statement", "print-used", "redundant-keyword-arg", "redundant-modulename-xml", "reimported", "relative-import", "return-in-init", "rst-syntax-error", "sql-injection", "too-few-format-args", "translation-field", "translation-required", "unreachable", "use-vim-comment", "wrong-tabs-instead-of-spaces", "xml-syntax-error", "attribute-string-redundant", "character-not-valid-in-resource-link", "consider-merging-classes-inherited", "context-overridden", "create-user-wo-reset-password", "dangerous-filter-wo-user", "dangerous-qweb-replace-wo-priority", "deprecated-data-xml-node", "deprecated-openerp-xml-node", "duplicate-po-message-definition", "except-pass", "file-not-used", "invalid-commit", "manifest-maintainers-list", "missing-newline-extrafiles", "missing-readme", "missing-return", "odoo-addons-relative-import", "old-api7-method-defined", "po-msgstr-variables", "po-syntax-error", "renamed-field-parameter", "resource-not-exist", "str-format-used", "test-folder-imported", "translation-contains-variable", "translation-positional-used", "unnecessary-utf8-coding-comment", "website-manifest-key-not-valid-uri", "xml-attribute-translatable", "xml-deprecated-qweb-directive", "xml-deprecated-tree-attribute", "external-request-timeout"]


def manifest() -> dict:
    return ast.literal_eval((MODULE / "__manifest__.py").read_text())


def xml_files() -> list[Path]:
    return sorted(MODULE.rglob("*.xml"))


@pytest.mark.parametrize("path", xml_files(), ids=lambda p: str(p.relative_to(MODULE)))
def test_xml_is_well_formed(path):
    ElementTree.parse(path)  # raises ParseError with line and column


def test_xml_record_ids_are_unique():
    ids = Counter()
    for path in xml_files():
        for node in ElementTree.parse(path).iter():
            if node.tag in ("record", "menuitem", "template") and node.get("id"):
                ids[node.get("id")] += 1
    assert [i for i, n in ids.items() if n > 1] == []


def test_manifest_sanity():
    data = manifest()
    assert data["license"] == "LGPL-3"
    # one code base for 17.0, 18.0 and 19.0: each Odoo prefixes its own series ("18.0.1.0.0")
    assert data["version"] == "1.0.0"
    assert data["depends"] == ["sale_stock"]
    assert data["author"] == AUTHOR
    for name in data["data"]:
        assert (MODULE / name).is_file(), f"__manifest__.py lists a missing file: {name}"
    listed = set(data["data"])
    shipped = {str(p.relative_to(MODULE)) for p in xml_files() + [MODULE / "security" / "ir.model.access.csv"]}
    assert shipped - listed == set(), "data files not listed in the manifest"
    for name in ("readme/DESCRIPTION.md", "readme/USAGE.md", "README.rst", "__init__.py"):
        assert (MODULE / name).is_file(), name


def _stored_models() -> set[str]:
    """_name of every models.Model class (not Abstract/Transient) in models/."""
    names = set()
    for path in (MODULE / "models").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {ast.unparse(b) for b in node.bases}
            if "models.Model" not in bases:
                continue
            for stmt in node.body:
                target = stmt.targets[0] if isinstance(stmt, ast.Assign) else None
                if isinstance(target, ast.Name) and target.id == "_name":
                    names.add(stmt.value.value)
    return names


def test_every_stored_model_has_access_rules():
    with (MODULE / "security" / "ir.model.access.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len({r["id"] for r in rows}) == len(rows), "duplicate ids in ir.model.access.csv"
    covered = {r["model_id:id"] for r in rows}
    models = _stored_models()
    assert models, "no models found: the AST scan is broken"
    missing = {m for m in models if "model_" + m.replace(".", "_") not in covered}
    assert missing == set()
    rules = (MODULE / "security" / "stock_sync_security.xml").read_text()
    for model in models:
        assert f'ref="model_{model.replace(".", "_")}"' in rules, f"no record rule for {model}"


def test_no_commit_in_business_code():
    offenders = [
        str(p.relative_to(MODULE)) for p in MODULE.rglob("*.py")
        if re.search(r"\bcr\.commit\(\)|\._cr\.commit\(\)", p.read_text())
    ]
    assert offenders == []


def _known_messages() -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pylint", "--load-plugins=pylint_odoo", "--list-msgs"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    return set(re.findall(r"^:([a-z0-9-]+) \(", out, re.M))


def test_pylint_odoo_mandatory_rules():
    if importlib.util.find_spec("pylint_odoo") is None:
        pytest.skip("pylint-odoo is not importable in this interpreter (pip install pylint-odoo)")
    # manifest-version-format wants one series prefix ("17.0.x.y.z"); a module for 17, 18 and 19
    # must leave it out (Odoo 18+ refuses another series' prefix), test_manifest_sanity checks it
    rules = sorted((set(MANDATORY) - {"manifest-version-format"}) & _known_messages())
    assert len(rules) >= 30, f"pylint-odoo knows too few mandatory rules: {rules}"
    proc = subprocess.run(
        [sys.executable, "-m", "pylint", "--load-plugins=pylint_odoo", "--disable=all",
         "--enable=" + ",".join(rules), "--valid-odoo-versions=17.0,18.0,19.0",
         f"--manifest-required-authors={AUTHOR}", "--score=n", str(MODULE)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
