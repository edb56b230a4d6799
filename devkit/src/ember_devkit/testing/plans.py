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


async def plans_made(connection: Any, statement_like: str) -> list[tuple[int, int]]:
    """(generic, custom) plans made so far on ``connection`` for each prepared statement whose
    text is ``LIKE statement_like``. Postgres makes custom plans (for the values given) for a
    statement's first five executions, then keeps its generic plan when that costs no more
    than they did on average; a statement planned again at every execution shows none."""
    rows = await connection.execute(
        text(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE :like ORDER BY prepare_time"
        ),
        {"like": statement_like},
    )
    return [(int(generic), int(custom)) for generic, custom in rows.all()]
