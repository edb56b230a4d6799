"""The statements a service's engine sends to Postgres while a block runs, for tests that count
them per request or per event (each is a round trip and a share of the ORM's, asyncpg's and
Postgres' work, so the counts are the write path's cost in a form that cannot drift with load)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

#: Names a statement worth counting (``None``: not one of the test's): called with the
#: statement's text, its parameters and the connection it is sent on.
Keep = Callable[[str, Any, Any], str | None]


@contextmanager
def statements_sent(engine: Any, keep: Keep) -> Iterator[list[str]]:
    """What ``keep`` names of each statement ``engine`` (an ``AsyncEngine`` or its sync engine)
    sends inside the block, in order. The relay, the consumers and the sweepers share the
    engine: ``keep`` picks the test's own statements (by table, by an id among the parameters)."""
    sent: list[str] = []
    sync_engine = getattr(engine, "sync_engine", engine)

    def record(conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        name = keep(statement, parameters, conn)
        if name is not None:
            sent.append(name)

    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)


def verb(statement: str) -> str:
    """The statement's first word, upper-cased: ``SELECT``, ``INSERT``, ``WITH``..."""
    return statement.split(None, 1)[0].upper()


def parameter_texts(parameters: Any) -> set[str]:
    """A statement's parameter values as text (ids come as UUIDs or as their text; asyncpg's
    positional parameters are a sequence, a mapping gives its values)."""
    values = parameters.values() if isinstance(parameters, dict) else parameters or ()
    return {str(value) for value in values}


@contextmanager
def statement_objects_sent(
    engine: Any,
    kind_of: Callable[[str], str | None],
    about: Callable[[Any], bool] | None = None,
) -> Iterator[dict[str, list[Any]]]:
    """The statement objects (what the code executed, not their text) ``engine`` sends inside
    the block, per the kind ``kind_of`` names from the statement's text (whitespace collapsed).
    A statement built once and reused is the same object each time, so SQLAlchemy memoizes its
    cache key on it; one built per call is walked for its key again. The objects themselves are
    kept, not their ids, which a freed one's successor may reuse. ``about``: only statements
    whose parameters it accepts (the suite's other requests may share the engine)."""
    sent: dict[str, list[Any]] = {}
    sync_engine = getattr(engine, "sync_engine", engine)

    def record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, _many: Any
    ) -> None:
        kind = kind_of(" ".join(statement.split()))
        if kind is not None and (about is None or about(parameters)):
            sent.setdefault(kind, []).append(context.invoked_statement)

    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)


def each_built_once(sent: dict[str, list[Any]], kinds: set[str], times: int) -> bool:
    """Whether each of ``kinds`` was sent ``times`` times, always as the same object."""
    return set(sent) >= kinds and all(
        len(sent[kind]) == times and all(s is sent[kind][0] for s in sent[kind]) for kind in kinds
    )
