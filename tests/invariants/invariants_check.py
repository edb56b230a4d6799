"""Reads ``invariants.json`` and finds what no longer backs it.

Every function returns the problems it found (an empty list when all is well), so the tests can
feed it a broken file and see it complain, as well as run it on the real one.

Kinds of check an invariant may name:

- ``test``: ``path`` (from the repo root) and ``function``, a test function defined in that file.
- ``import_contract``: ``name``, an import-linter contract in pyproject.toml.
- ``lint``: ``tool`` ``ruff`` with a ``rule`` ruff enforces on production code, or
  ``tool`` ``test`` with ``path`` and ``function`` (a lint written as a test).
- ``database``: ``schema``, ``table``, ``constraint`` (``check``, ``unique``, ``primary_key``,
  ``unique_index`` or ``trigger``), ``name`` and ``definition`` exactly as Postgres prints it
  (``pg_get_constraintdef``, ``pg_get_indexdef``, ``pg_get_triggerdef``).
- ``manual``: ``reason``, why no machine can check it.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg

INVARIANT_COUNT = 15
KINDS = {"test", "import_contract", "lint", "database", "manual"}
CONSTRAINTS = {"check", "unique", "primary_key", "unique_index", "trigger"}
REQUIRED: dict[str, tuple[str, ...]] = {
    "test": ("path", "function"),
    "import_contract": ("name",),
    "database": ("schema", "table", "constraint", "name", "definition"),
    "manual": ("reason",),
}

Document = dict[str, Any]
Check = dict[str, Any]


def load(path: Path) -> Document:
    document: Document = json.loads(path.read_text(encoding="utf-8"))
    return document


def checks_of(document: Document, kind: str) -> Iterable[tuple[str, Check]]:
    for invariant in document.get("invariants", []):
        for check in invariant.get("checks", []):
            if check.get("kind") == kind:
                yield str(invariant.get("id")), check


def _test_target(check: Check) -> tuple[str, str] | None:
    if check["kind"] == "test" or (check["kind"] == "lint" and check.get("tool") == "test"):
        return str(check["path"]), str(check["function"])
    return None


def shape_problems(document: Document) -> list[str]:
    """The file itself: INV-1..INV-15 in order, each stated, each with well-formed checks."""
    problems: list[str] = []
    invariants = document.get("invariants")
    if not isinstance(invariants, list):
        return ["the file has no list of invariants"]
    ids = [item.get("id") for item in invariants]
    expected = [f"INV-{n}" for n in range(1, INVARIANT_COUNT + 1)]
    if ids != expected:
        problems.append(f"the ids are {ids}, not {expected}")
    for item in invariants:
        ident = item.get("id")
        if not str(item.get("statement", "")).strip():
            problems.append(f"{ident}: no statement")
        checks = item.get("checks")
        if not isinstance(checks, list) or not checks:
            problems.append(f"{ident}: no checks")
            continue
        for check in checks:
            kind = check.get("kind")
            if kind not in KINDS:
                problems.append(f"{ident}: unknown kind of check {kind!r}")
                continue
            needed = REQUIRED.get(kind, ())
            if kind == "lint":
                needed = ("rule",) if check.get("tool") == "ruff" else ("path", "function")
                if check.get("tool") not in ("ruff", "test"):
                    problems.append(f"{ident}: a lint's tool is 'ruff' or 'test'")
            missing = [key for key in needed if not str(check.get(key, "")).strip()]
            if missing:
                problems.append(f"{ident}: a {kind} check lacks {', '.join(missing)}")
            if kind == "database" and check.get("constraint") not in CONSTRAINTS:
                problems.append(f"{ident}: unknown constraint kind {check.get('constraint')!r}")
    return problems


def test_functions(path: Path) -> set[str]:
    """The test functions a file defines, at module level or in a ``Test*`` class."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    found = {node.name for node in tree.body if isinstance(node, functions)}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            found |= {child.name for child in node.body if isinstance(child, functions)}
    return {name for name in found if name.startswith("test")}


def lost_checks(document: Document, root: Path) -> list[str]:
    """Machine checks the file names that the repository no longer has."""
    problems: list[str] = []
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = {
        contract.get("name")
        for contract in pyproject.get("tool", {}).get("importlinter", {}).get("contracts", [])
    }
    enforced: set[str] | None = None
    defined: dict[Path, set[str]] = {}
    for invariant in document.get("invariants", []):
        ident = invariant.get("id")
        for check in invariant.get("checks", []):
            target = _test_target(check)
            if target is not None:
                path = root / target[0]
                if not path.is_file():
                    problems.append(f"{ident}: {target[0]} does not exist")
                    continue
                if path not in defined:
                    defined[path] = test_functions(path)
                if target[1] not in defined[path]:
                    problems.append(f"{ident}: {target[0]} has no test {target[1]}")
            elif check.get("kind") == "import_contract" and check.get("name") not in contracts:
                problems.append(f"{ident}: pyproject.toml has no import contract {check['name']!r}")
            elif check.get("kind") == "lint" and check.get("tool") == "ruff":
                if enforced is None:
                    enforced = ruff_rules(root)
                if check["rule"] not in enforced:
                    problems.append(f"{ident}: ruff does not check {check['rule']}")
    return problems


#: A production module: ruff's rules for it are the ones the tests' per-file ignores do not touch.
RUFF_PROBE = "shared/src/ember_shared/settings.py"


def ruff_rules(root: Path) -> set[str]:
    """The rule codes ruff enforces on production code, as ruff itself resolves the config
    (selectors such as ``E`` vs ``ERA`` or ``PL`` vs ``PLR`` are ruff's to interpret, not ours)."""
    shown = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--show-settings", RUFF_PROBE],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    enabled = shown.split("linter.rules.enabled = [", 1)[1].split("]", 1)[0]
    return set(re.findall(r"\(([A-Z]+[0-9]+)\)", enabled))


def machine_checked(document: Document) -> list[str]:
    """Ids of the invariants that have at least one check a machine runs."""
    return [
        item["id"]
        for item in document.get("invariants", [])
        if any(check.get("kind") != "manual" for check in item.get("checks", []))
    ]


def psycopg_url(url: str) -> str:
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)


_DEFINITIONS: dict[str, str] = {
    # contype: c check, u unique, p primary key
    "check": """
        SELECT con.conname, pg_get_constraintdef(con.oid) FROM pg_constraint con
        JOIN pg_class t ON t.oid = con.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = %s AND t.relname = %s AND con.contype = 'c'""",
    "unique": """
        SELECT con.conname, pg_get_constraintdef(con.oid) FROM pg_constraint con
        JOIN pg_class t ON t.oid = con.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = %s AND t.relname = %s AND con.contype = 'u'""",
    "primary_key": """
        SELECT con.conname, pg_get_constraintdef(con.oid) FROM pg_constraint con
        JOIN pg_class t ON t.oid = con.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = %s AND t.relname = %s AND con.contype = 'p'""",
    "unique_index": """
        SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = %s AND t.relname = %s AND x.indisunique""",
    "trigger": """
        SELECT tg.tgname, pg_get_triggerdef(tg.oid) FROM pg_trigger tg
        JOIN pg_class t ON t.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = %s AND t.relname = %s AND NOT tg.tgisinternal
          AND tg.tgenabled <> 'D'""",
}


def database_drift(document: Document, connection: psycopg.Connection[Any]) -> list[str]:
    """Listed constraints, unique indexes and triggers the migrated database lacks or has changed.

    A listed one is found by its definition, so a renamed constraint still counts; a disabled
    trigger does not.
    """
    problems: list[str] = []
    for ident, check in checks_of(document, "database"):
        query = _DEFINITIONS.get(str(check.get("constraint")))
        if query is None:
            problems.append(f"{ident}: unknown constraint kind {check.get('constraint')!r}")
            continue
        rows = connection.execute(query, (check["schema"], check["table"])).fetchall()
        present = {str(definition): str(name) for name, definition in rows}
        if str(check["definition"]) in present:
            continue
        where = f"{check['schema']}.{check['table']}"
        same_name = [d for d, n in present.items() if n == check["name"]]
        if same_name:
            problems.append(
                f"{ident}: {check['constraint']} {check['name']} on {where} is now "
                f"{same_name[0]!r}, the file says {check['definition']!r}"
            )
        else:
            problems.append(
                f"{ident}: {where} has no {check['constraint']} {check['definition']!r} "
                f"({check['name']})"
            )
    return problems
