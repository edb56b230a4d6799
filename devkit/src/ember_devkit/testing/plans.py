"""What Postgres makes of a service's schema and statements, for tests of its cost per order:
indexes that only add writes, and how a prepared statement has been planned on a connection."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

#: Plain (not unique, no predicate, no expression) indexes whose columns lead another index of
#: the same kind on the same table: every read they serve the other serves, and every insert
#: (and every update that is not HOT) writes both.
_REDUNDANT = text(
    """
    SELECT a.indexrelid::regclass::text
      FROM pg_index a
      JOIN pg_index b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid
      JOIN pg_class ai ON ai.oid = a.indexrelid
      JOIN pg_class bi ON bi.oid = b.indexrelid
      JOIN pg_class t ON t.oid = a.indrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
     WHERE n.nspname = :schema
       AND NOT a.indisunique
       AND a.indpred IS NULL AND b.indpred IS NULL
       AND a.indexprs IS NULL AND b.indexprs IS NULL
       AND ai.relam = bi.relam
       AND (b.indkey::text = a.indkey::text OR b.indkey::text LIKE a.indkey::text || ' %')
     ORDER BY 1
    """
)


async def redundant_indexes(connection: Any, schema: str) -> list[str]:
    """The indexes of ``schema`` that another index of it makes redundant (see ``_REDUNDANT``)."""
    return [name for (name,) in (await connection.execute(_REDUNDANT, {"schema": schema})).all()]


#: Postgres makes custom plans (for the values given) for a prepared statement's first five
#: executions on a connection, then keeps its generic plan when that costs no more than they
#: did on average; a statement whose generic plan looks dearer is planned again every time.
CUSTOM_FIRST = 5


async def plans_made(connection: Any, statement_like: str) -> tuple[int, int]:
    """(generic, custom) plans made so far on ``connection`` for the prepared statements whose
    text is ``LIKE statement_like`` (a pooled connection may have run them before the test)."""
    row = (
        await connection.execute(
            text(
                "SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0)"
                " FROM pg_prepared_statements WHERE statement LIKE :like"
            ),
            {"like": statement_like},
        )
    ).one()
    return int(row[0]), int(row[1])


def generic_kept(before: tuple[int, int], after: tuple[int, int], runs: int) -> bool:
    """Whether ``runs`` executions between the counts ``before`` and ``after`` were planned as a
    statement whose generic plan is kept: custom only until the connection's first five."""
    custom = max(0, min(runs, CUSTOM_FIRST - before[1]))
    return (after[0] - before[0], after[1] - before[1]) == (runs - custom, custom)
