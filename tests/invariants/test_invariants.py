"""invariants.json stays true: each machine check it names still exists, the migrated database still
has every constraint, unique index and trigger it lists, and the lints it names (defined here) pass.

The checker is also fed broken files and a database with a constraint and a trigger taken away
(inside a transaction that is rolled back), so a pass means something.
"""

from __future__ import annotations

import copy
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ember_shared.migrations import SERVICES_WITH_SCHEMAS
from ember_shared.settings import repo_root
from invariants_check import (
    Document,
    database_drift,
    load,
    lost_checks,
    machine_checked,
    psycopg_url,
    shape_problems,
)
from test_storefront_design_tokens import COLOUR_ATTRIBUTE, FUNCTIONS, HEX, NAMED

ROOT = repo_root()
FILE = ROOT / "invariants.json"


@pytest.fixture(scope="module")
def document() -> Document:
    return load(FILE)


@pytest.fixture
def database(ember_env: Any) -> Iterator[psycopg.Connection[Any]]:
    """The session's migrated database (every service's schema, from its migrations)."""
    with psycopg.connect(psycopg_url(ember_env.database_url)) as connection:
        yield connection
        connection.rollback()


def test_the_file_states_the_fifteen_invariants(document: Document) -> None:
    assert shape_problems(document) == []
    # Every invariant has a check a machine runs; manual review is an addition, never the only one.
    assert machine_checked(document) == [f"INV-{n}" for n in range(1, 16)]


def test_no_machine_check_the_file_names_is_lost(document: Document) -> None:
    assert lost_checks(document, ROOT) == []


def test_the_migrated_database_has_every_listed_constraint(
    document: Document, database: psycopg.Connection[Any]
) -> None:
    listed = [c for i in document["invariants"] for c in i["checks"] if c["kind"] == "database"]
    assert {c["constraint"] for c in listed} == {
        "check",
        "unique",
        "primary_key",
        "unique_index",
        "trigger",
    }
    assert database_drift(document, database) == []


def _with_checks(document: Document, ident: str, *checks: dict[str, str]) -> Document:
    changed = copy.deepcopy(document)
    for invariant in changed["invariants"]:
        if invariant["id"] == ident:
            invariant["checks"].extend(checks)
    return changed


def test_the_checker_names_a_lost_test_contract_or_lint(document: Document) -> None:
    broken = _with_checks(
        document,
        "INV-6",
        {
            "kind": "test",
            "path": "services/catalog/tests/test_catalog_stock.py",
            "function": "test_stock_that_was_renamed_away",
        },
        {"kind": "test", "path": "services/catalog/tests/test_gone.py", "function": "test_x"},
        {"kind": "import_contract", "name": "Catalog imports nothing at all"},
        {"kind": "lint", "tool": "ruff", "rule": "S101"},  # selected, but ignored
        {"kind": "lint", "tool": "ruff", "rule": "ERA001"},  # never selected
        {
            "kind": "lint",
            "tool": "test",
            "path": "tests/invariants/test_invariants.py",
            "function": "test_a_lint_nobody_wrote",
        },
    )
    assert lost_checks(broken, ROOT) == [
        "INV-6: services/catalog/tests/test_catalog_stock.py has no test "
        "test_stock_that_was_renamed_away",
        "INV-6: services/catalog/tests/test_gone.py does not exist",
        "INV-6: pyproject.toml has no import contract 'Catalog imports nothing at all'",
        "INV-6: ruff does not check S101",
        "INV-6: ruff does not check ERA001",
        "INV-6: tests/invariants/test_invariants.py has no test test_a_lint_nobody_wrote",
    ]


def test_the_checker_refuses_a_malformed_file(document: Document) -> None:
    broken = copy.deepcopy(document)
    broken["invariants"][1], broken["invariants"][2] = (
        broken["invariants"][2],
        broken["invariants"][1],
    )
    broken["invariants"][0]["statement"] = " "
    broken["invariants"][0]["checks"].append({"kind": "manual"})
    broken["invariants"][3]["checks"] = []
    broken["invariants"][4]["checks"].append({"kind": "hope"})
    assert shape_problems(broken) == [
        "the ids are ['INV-1', 'INV-3', 'INV-2', 'INV-4', 'INV-5', 'INV-6', 'INV-7', 'INV-8', "
        "'INV-9', 'INV-10', 'INV-11', 'INV-12', 'INV-13', 'INV-14', 'INV-15'], not "
        "['INV-1', 'INV-2', 'INV-3', 'INV-4', 'INV-5', 'INV-6', 'INV-7', 'INV-8', 'INV-9', "
        "'INV-10', 'INV-11', 'INV-12', 'INV-13', 'INV-14', 'INV-15']",
        "INV-1: no statement",
        "INV-1: a manual check lacks reason",
        "INV-4: no checks",
        "INV-5: unknown kind of check 'hope'",
    ]
    only_manual = copy.deepcopy(document)
    only_manual["invariants"][0]["checks"] = [{"kind": "manual", "reason": "trust us"}]
    assert "INV-1" not in machine_checked(only_manual)


def test_the_drift_gate_names_a_constraint_the_file_has_and_the_database_lacks(
    document: Document, database: psycopg.Connection[Any]
) -> None:
    broken = _with_checks(
        document,
        "INV-6",
        {
            "kind": "database",
            "schema": "catalog",
            "table": "inventory",
            "constraint": "check",
            "name": "ck_inventory_on_hand_not_negative",
            "definition": "CHECK ((on_hand >= 1))",
        },
        {
            "kind": "database",
            "schema": "catalog",
            "table": "inventory",
            "constraint": "unique",
            "name": "uq_inventory_sold_once",
            "definition": "UNIQUE (product_id, order_id)",
        },
    )
    assert database_drift(broken, database) == [
        "INV-6: check ck_inventory_on_hand_not_negative on catalog.inventory is now "
        "'CHECK ((on_hand >= 0))', the file says 'CHECK ((on_hand >= 1))'",
        "INV-6: catalog.inventory has no unique 'UNIQUE (product_id, order_id)' "
        "(uq_inventory_sold_once)",
    ]


def test_the_drift_gate_notices_a_dropped_check_index_and_trigger(
    document: Document, database: psycopg.Connection[Any]
) -> None:
    # DDL is transactional in Postgres: the rollback below puts all three back.
    database.execute("SET LOCAL lock_timeout = '10s'")
    database.execute(
        "ALTER TABLE catalog.inventory DROP CONSTRAINT ck_inventory_reserved_not_negative"
    )
    database.execute("DROP INDEX orders.uq_orders_stripe_invoice")
    database.execute("ALTER TABLE orders.order_items DISABLE TRIGGER order_items_immutable")
    try:
        assert database_drift(document, database) == [
            "INV-4: orders.orders has no unique_index 'CREATE UNIQUE INDEX "
            "uq_orders_stripe_invoice ON orders.orders USING btree (stripe_invoice_id) WHERE "
            "(stripe_invoice_id IS NOT NULL)' (uq_orders_stripe_invoice)",
            "INV-6: catalog.inventory has no check 'CHECK ((reserved >= 0))' "
            "(ck_inventory_reserved_not_negative)",
            "INV-14: orders.order_items has no trigger 'CREATE TRIGGER order_items_immutable "
            "BEFORE DELETE OR UPDATE ON orders.order_items FOR EACH ROW EXECUTE FUNCTION "
            "orders.refuse_order_item_change()' (order_items_immutable)",
        ]
    finally:
        database.rollback()
    assert database_drift(document, database) == []


# The lints invariants.json names (kind "lint", tool "test").

STOREFRONT = ROOT / "services/storefront/src/storefront"
NOTIFIER = ROOT / "services/notifier/src/notifier"
TOKEN_STYLESHEET = STOREFRONT / "static/tokens.css"
#: Mail clients ignore CSS custom properties, so mail carries the token values inline; this map is
#: the one place outside the token stylesheet a colour may be written, and only one it defines.
MAIL_TOKEN_MAP = NOTIFIER / "emails/rendering.py"
STYLED = {".css", ".html", ".j2", ".svg", ".js", ".py"}


def _python_strings(source: str) -> list[str]:
    """The string literals of a module: a colour in a comment or a name is not a style."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    kinds = {tokenize.STRING} | {getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    return [token.string for token in tokens if token.type in kinds]


def colour_literals(path: Path, text: str) -> list[str]:
    patterns: tuple[re.Pattern[str], ...]
    if path.suffix == ".py":
        chunks = _python_strings(text)
        patterns = (HEX, FUNCTIONS)
    else:
        chunks = text.splitlines()
        patterns = (HEX, FUNCTIONS, NAMED, COLOUR_ATTRIBUTE)
    return [m.group(0) for chunk in chunks for p in patterns for m in p.finditer(chunk)]


def token_colours() -> set[str]:
    declared = re.findall(r"--[\w-]+\s*:\s*([^;]+);", TOKEN_STYLESHEET.read_text(encoding="utf-8"))
    return {value.strip().lower() for value in declared}


def styled_files() -> list[Path]:
    # app.css and the storefront's templates are scanned (for sizes too) by
    # services/storefront/tests/test_storefront_design_tokens.py; this covers everything else.
    covered = {STOREFRONT / "static/app.css", TOKEN_STYLESHEET}
    found = []
    for package in (STOREFRONT, NOTIFIER):
        for path in sorted(package.rglob("*")):
            if path.suffix not in STYLED or path in covered or path.name.endswith(".min.js"):
                continue
            if "__pycache__" in path.parts or "migrations" in path.parts:
                continue
            if path.is_relative_to(STOREFRONT / "templates"):
                continue
            found.append(path)
    return found


def test_no_colour_literal_outside_the_token_stylesheet() -> None:
    files = styled_files()
    assert MAIL_TOKEN_MAP in files
    assert any(p.suffix == ".j2" for p in files), "the mail templates are scanned"
    tokens = token_colours()
    stray = {}
    for path in files:
        found = colour_literals(path, path.read_text(encoding="utf-8"))
        if path == MAIL_TOKEN_MAP:
            assert found, "the mail token map holds the mail's colours"
            found = [colour for colour in found if colour.lower() not in tokens]
        if found:
            stray[str(path.relative_to(ROOT))] = found
    assert stray == {}


def test_the_colour_lint_catches_literals() -> None:
    css, py = Path("x.css"), Path("x.py")
    assert colour_literals(css, ".a { color: #abc; background: rgb(0 0 0); }") == [
        "#abc",
        "rgb(",
    ]
    assert colour_literals(Path("x.svg"), '<path fill="#fff" stroke="red"/>') == [
        "#fff",
        'fill="',
        'stroke="',
    ]
    assert colour_literals(py, 'STYLE = "color:#b4451f"  # not #123 in a comment\n') == ["#b4451f"]
    assert colour_literals(py, "x = f'border:1px solid {c};background:hsl(1 2% 3%)'\n") == ["hsl("]
    assert colour_literals(css, ".a { color: var(--color-ink); }") == []
    assert "#b4451f" in token_colours()
    assert "#123456" not in token_colours()


#: Only the relay (outbox rows to streams) and the dead-letter store (and its replay) write to a
#: Redis stream; everything else adds to its service's outbox in its own transaction.
STREAM_WRITERS = {
    Path("shared/src/ember_shared/events/relay.py"),
    Path("shared/src/ember_shared/events/dead_letters.py"),
}
WRITES_STREAM = re.compile(r"\bXADD\b", re.IGNORECASE)
PUBLISHING_NAMES = {"xadd", "publish", "publisher"}


def writes_streams(source: str) -> bool:
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and token.string in PUBLISHING_NAMES:
            return True
        if token.type == tokenize.STRING and WRITES_STREAM.search(token.string):
            return True
    return False


def production_sources() -> list[Path]:
    roots = [ROOT / "shared/src", ROOT / "standins/src", *sorted((ROOT / "services").glob("*/src"))]
    return [
        path.relative_to(ROOT)
        for root in roots
        for path in sorted(root.rglob("*.py"))
        if "migrations" not in path.parts
    ]


def test_only_the_relay_and_the_dead_letter_replay_write_to_streams() -> None:
    sources = production_sources()
    assert len(sources) > 100, "the scan sees every service"
    writers = {p for p in sources if writes_streams((ROOT / p).read_text(encoding="utf-8"))}
    assert writers == STREAM_WRITERS


def test_the_stream_lint_catches_a_direct_publish() -> None:
    assert writes_streams("await redis.xadd('orders', {'x': 1})\n")
    assert writes_streams("await broker.publish(message, stream='orders')\n")
    assert writes_streams("await redis.execute_command('XADD', 'orders', '*', 'x', 1)\n")
    assert not writes_streams("# we never xadd here\nOutbox.add(session, data)\n")


def test_no_foreign_key_crosses_a_service_schema(database: psycopg.Connection[Any]) -> None:
    rows = database.execute(
        """
        SELECT con.conname, source.nspname, target.nspname FROM pg_constraint con
        JOIN pg_class s ON s.oid = con.conrelid JOIN pg_namespace source ON source.oid = s.relnamespace
        JOIN pg_class t ON t.oid = con.confrelid JOIN pg_namespace target ON target.oid = t.relnamespace
        WHERE con.contype = 'f' AND source.nspname = ANY(%(schemas)s)
        """,
        {"schemas": list(SERVICES_WITH_SCHEMAS)},
    ).fetchall()
    assert rows, "services do use foreign keys within their own schema"
    assert [row for row in rows if row[1] != row[2]] == []


def test_no_column_of_any_service_is_floating_point(database: psycopg.Connection[Any]) -> None:
    # Money is integer minor units; an inexact type has no business in any table.
    rows = database.execute(
        """
        SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns
        WHERE table_schema = ANY(%(schemas)s)
          AND data_type IN ('real', 'double precision', 'numeric')
        """,
        {"schemas": list(SERVICES_WITH_SCHEMAS)},
    ).fetchall()
    assert rows == []
    (total,) = database.execute(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_schema = 'orders' AND table_name = 'orders' AND column_name = 'total'"
    ).fetchall()
    assert total[0] in ("integer", "bigint")
