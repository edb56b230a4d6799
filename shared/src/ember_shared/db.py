"""Database wiring: advanced-alchemy on asyncpg, one Postgres schema per service.

Each service declares its models on the base that :func:`service_base` makes for its schema,
so its tables (and its outbox and handled-events tables) are created in that schema only.
Handlers get an ``AsyncSession`` as ``db_session``; the request owns the transaction and it is
committed when the response is a success (polar's rule: services and repositories never commit).

Work that must follow a commit (invalidating a cache, say) is registered on the session with
:func:`after_commit`; it runs once the session's outermost transaction commits and is dropped if
that transaction (or the savepoint it was registered in) rolls back. Whoever owns the transaction
awaits it with :func:`after_commit_done`: the request path before the response goes out (see
:func:`sqlalchemy_plugin`), the event consumer before it acknowledges.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import structlog
from advanced_alchemy.base import CommonTableAttributes, convention, create_registry
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from advanced_alchemy.extensions.litestar._utils import delete_aa_scope_state, get_aa_scope_state
from advanced_alchemy.extensions.litestar.plugins.init.config.common import (
    SESSION_TERMINUS_ASGI_EVENTS,
)
from advanced_alchemy.types import DateTimeUTC
from litestar.constants import HTTP_RESPONSE_START
from litestar.types import BeforeMessageSendHookHandler, Message, Scope
from sqlalchemy import MetaData, event, func
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncAttrs,
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    SessionTransaction,
    declared_attr,
    mapped_column,
    registry,
)
from sqlalchemy.pool import ConnectionPoolEntry

from ember_shared.events.tables import define_event_tables
from ember_shared.ids import new_id
from ember_shared.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE, DatabaseConnectionLost
from ember_shared.settings import ServiceSettings


def service_base(schema: str) -> type[DeclarativeBase]:
    """An abstract declarative base whose tables all live in Postgres schema ``schema``."""
    template = create_registry()
    metadata = MetaData(schema=schema, naming_convention=convention)
    reg = registry(metadata=metadata, type_annotation_map=template.type_annotation_map)

    define_event_tables(metadata)

    class Base(CommonTableAttributes, AsyncAttrs, DeclarativeBase):
        __abstract__ = True
        registry = reg
        metadata = reg.metadata

    Base.__name__ = f"{schema.title()}Base"
    return Base


class EntityColumns:
    """A time-ordered UUIDv7 primary key and created/updated timestamps."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id, sort_order=-100)

    @declared_attr
    def created_at(cls) -> Mapped[dt.datetime]:  # noqa: N805
        return mapped_column(DateTimeUTC(timezone=True), server_default=func.now(), nullable=False)

    @declared_attr
    def updated_at(cls) -> Mapped[dt.datetime]:  # noqa: N805
        return mapped_column(
            DateTimeUTC(timezone=True),
            server_default=func.now(),
            onupdate=func.now(),
            nullable=False,
        )


def engine_options(settings: ServiceSettings) -> dict[str, Any]:
    return {
        "pool_size": settings.db.pool_size,
        "max_overflow": settings.db.max_overflow,
        "echo": settings.db.echo,
        # asyncpg caches prepared statements per connection; names must not clash behind pgbouncer.
        "connect_args": {"server_settings": {"application_name": settings.app.name}},
    }


#: A pooled connection that sat unused for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 5.0
_IDLE_SINCE = "ember.idle_since"


def ping_after_idle(engine: AsyncEngine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Ping a pooled connection before use only when it has been idle for ``idle_seconds``.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: on asyncpg three statements
    (``BEGIN; ;ROLLBACK``), 5-10 % of each service's CPU on the write path and three of
    Postgres' round trips per request. A connection idle for a while is the one a Postgres
    restart, a failover or an idle timeout has killed, so that is the one pinged; a dead one is
    replaced before use (``DisconnectionError`` makes the pool open a new connection). One in
    steady use that the server drops fails its next statement, which SQLAlchemy reads as a
    disconnect and answers by discarding every connection of the pool: one failed request per
    process, as with a restart in the middle of a query.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def idle_from_now(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise DisconnectionError(f"idle connection failed its ping: {exc}") from exc


def make_engine(settings: ServiceSettings, **options: Any) -> AsyncEngine:
    """The service's engine; ``options`` (a pool of its own: ``pool_size``...) win over the
    settings'."""
    engine = create_async_engine(settings.db.async_url, **{**engine_options(settings), **options})
    ping_after_idle(engine)
    return engine


log = structlog.get_logger("ember.db")


def sql_literal(value: str) -> str:
    """A string literal for a simple query (no parameters there). Only the code's own names
    and keys go through here, never what a request or a message carried."""
    if "\x00" in value:
        raise ValueError("a NUL byte cannot be sent to Postgres")
    return "'" + value.replace("'", "''") + "'"


async def simple_query(driver: Any, query: str) -> str:
    """Run ``query`` on asyncpg's connection, as a simple query (it may hold several
    statements: one round trip for all); its status."""
    try:
        status: str = await driver.execute(query)
    except Exception as exc:
        if driver.is_closed():
            # asyncpg's own error, which SQLAlchemy never saw: said as what it is, a lost
            # connection (an event's delivery is then not counted against it).
            raise DatabaseConnectionLost(f"the database connection was lost: {exc!r}") from exc
        raise
    return status


async def abandon_transaction(connection: AsyncConnection, driver: Any) -> None:
    """End a transaction begun by :func:`simple_query` on ``connection`` before it goes back to
    the pool, whose reset would not (SQLAlchemy, in autocommit, knows of no transaction). What
    could not be rolled back is closed instead; the caller's own error is the one raised."""
    try:
        if not driver.is_closed() and driver.is_in_transaction():
            await driver.execute("ROLLBACK")
    except Exception as exc:
        log.warning("transaction_rollback_failed", error=repr(exc))
    finally:
        if driver.is_closed() or driver.is_in_transaction():
            await connection.invalidate()


@asynccontextmanager
async def transaction_begun_with(
    sessions: async_sessionmaker[AsyncSession], first: str
) -> AsyncIterator[AsyncSession]:
    """A session in a transaction whose BEGIN is sent with its first statement (``first``, a
    simple query: no parameters) in one round trip, as the event consumer begins; SQLAlchemy
    sends BEGIN alone first. ``sessions``: autocommit sessions (SQLAlchemy then sends neither
    BEGIN nor COMMIT of its own). Committed when the block ends (after-commit hooks run then),
    rolled back when it raises."""
    async with sessions() as session:
        connection = await session.connection()
        driver = (await connection.get_raw_connection()).driver_connection
        ended = False
        try:
            await simple_query(driver, f"BEGIN; {first}")
            yield session
            await session.flush()
            if await simple_query(driver, "COMMIT") != "COMMIT":
                # Postgres answers COMMIT with ROLLBACK when a statement had failed.
                raise RuntimeError("the transaction was rolled back at commit")
            ended = True
        finally:
            if not ended:
                await abandon_transaction(connection, driver)
        # SQLAlchemy saw no transaction of its own: its commit only fires the session's
        # after-commit hooks, now that Postgres has committed.
        await session.commit()
        await after_commit_done(session)


#: An after-commit hook: called with nothing, awaited after the commit.
AfterCommit = Callable[[], Awaitable[None]]

_HOOKS_KEY = "ember.after_commit.hooks"
_RUNNING_KEY = "ember.after_commit.running"
_LISTENING_KEY = "ember.after_commit.listening"
#: Strong references to hooks that run: a task nobody holds can be collected mid-run.
_tasks: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class _Hook:
    callback: AfterCommit
    #: The savepoint open when it was registered (None: the outermost transaction).
    savepoint: SessionTransaction | None


def _sync(session: AsyncSession | Session) -> Session:
    return session.sync_session if isinstance(session, AsyncSession) else session


def after_commit(session: AsyncSession | Session, callback: AfterCommit) -> None:
    """Run ``callback`` once ``session``'s outermost transaction has committed (never before,
    and once); drop it if the transaction, or the savepoint it was registered in, rolls back.

    The listeners are put on this one session the first time it gets a hook, so sessions that
    never register one pay nothing and nothing is listened to process-wide.
    """
    sync = _sync(session)
    if not sync.info.get(_LISTENING_KEY):
        event.listen(sync, "after_commit", _on_commit)
        event.listen(sync, "after_soft_rollback", _on_rollback)
        sync.info[_LISTENING_KEY] = True
    hooks: list[_Hook] = sync.info.setdefault(_HOOKS_KEY, [])
    hooks.append(_Hook(callback, sync.get_nested_transaction()))


def pending_after_commit(session: AsyncSession | Session) -> list[AfterCommit]:
    """The hooks waiting for the session's commit, in the order they were registered."""
    return [hook.callback for hook in _sync(session).info.get(_HOOKS_KEY, [])]


async def after_commit_done(session: AsyncSession | Session) -> None:
    """Wait for the hooks that the session's commits have started. A hook that raised is
    logged, never raised here: its transaction has committed, and the caller's work with it."""
    running: list[asyncio.Task[None]] = _sync(session).info.pop(_RUNNING_KEY, [])
    if not running:  # most requests and events: nothing was set off
        return
    for outcome in await asyncio.gather(*running, return_exceptions=True):
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            log.error("after_commit_hook_failed", error=repr(outcome), exc_info=outcome)


def _on_commit(session: Session) -> None:
    if session.in_nested_transaction():
        # A savepoint was released: its hooks wait for the outermost commit.
        return
    hooks: list[_Hook] = session.info.pop(_HOOKS_KEY, [])
    if not hooks:
        return
    # The commit event is synchronous (it runs in SQLAlchemy's greenlet, on the event loop's
    # thread): the hooks start as tasks now, and the transaction's owner awaits them.
    loop = asyncio.get_running_loop()
    running: list[asyncio.Task[None]] = session.info.setdefault(_RUNNING_KEY, [])
    for hook in hooks:
        task = loop.create_task(_call(hook.callback))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
        running.append(task)


async def _call(callback: AfterCommit) -> None:
    await callback()


def _on_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    hooks: list[_Hook] = session.info.get(_HOOKS_KEY, [])
    if not previous_transaction.nested:
        hooks.clear()
        return
    hooks[:] = [hook for hook in hooks if not _within(hook.savepoint, previous_transaction)]


def _within(savepoint: SessionTransaction | None, ended: SessionTransaction) -> bool:
    current = savepoint
    while current is not None:
        if current is ended:
            return True
        current = current.parent
    return False


def _request_transaction(session_scope_key: str) -> BeforeMessageSendHookHandler:
    """The request owns its transaction: committed when the answer is a success, rolled back
    otherwise, and then the commit's hooks, all before the response starts (a client that has
    its answer sees everything the commit set off, a cache invalidated say).

    advanced-alchemy's own ``autocommit`` handler logs a failed commit and sends the 2xx anyway:
    a write that never happened would be answered as done. Here a failed commit replaces the
    answer (503 ``not-saved``: nothing was changed, the client may try again). It is rewritten
    in place because the response has formally started: raising would only drop the connection.
    """
    refused_key = f"{session_scope_key}.not_saved"

    async def before_send(message: Message, scope: Scope) -> None:
        refused = cast("bytes | None", scope.get(refused_key))  # type: ignore[misc]
        if refused is not None and message["type"] == "http.response.body":
            message["body"] = refused if not scope.get(f"{refused_key}.sent") else b""  # type: ignore[misc]
            message["more_body"] = False
            scope[f"{refused_key}.sent"] = True  # type: ignore[literal-required]
            return
        session = cast("AsyncSession | None", get_aa_scope_state(scope, session_scope_key))
        if session is None:
            return
        try:
            if message["type"] == HTTP_RESPONSE_START:
                if 200 <= message["status"] < 300:
                    try:
                        await session.commit()
                    except Exception as exc:
                        log.exception("request_commit_failed", error=type(exc).__name__)
                        body = _not_saved(scope)
                        scope[refused_key] = body  # type: ignore[literal-required]
                        message["status"] = 503
                        replaced = {b"content-type", b"content-length", b"cache-control", b"etag"}
                        message["headers"] = [
                            *(
                                (name, value)
                                for name, value in message.get("headers", [])
                                if name.lower() not in replaced
                            ),
                            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode()),
                            (b"retry-after", b"1"),
                            (b"cache-control", b"no-store"),
                        ]
                        return
                    await after_commit_done(session)
                else:
                    try:
                        await session.rollback()
                    except Exception as exc:  # the answer is already a refusal: let it go out
                        log.warning("request_rollback_failed", error=type(exc).__name__)
        finally:
            if message["type"] in SESSION_TERMINUS_ASGI_EVENTS and get_aa_scope_state(
                scope, session_scope_key
            ):
                await _close_quietly(session)
                delete_aa_scope_state(scope, session_scope_key)

    return before_send


def _not_saved(scope: Scope) -> bytes:
    problem: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + "not-saved",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "The change could not be saved, so nothing was changed. Try again.",
        "instance": scope.get("path", ""),
    }
    request_id = scope.get("state", {}).get("request_id")
    if request_id:
        problem["request_id"] = request_id
    return msgspec.json.encode(problem)


async def _close_quietly(session: AsyncSession) -> None:
    try:
        await session.close()
    except Exception as exc:  # the answer is decided; a broken connection is the pool's to drop
        log.warning("request_session_close_failed", error=type(exc).__name__)


def sqlalchemy_plugin(settings: ServiceSettings, engine: AsyncEngine) -> SQLAlchemyPlugin:
    config = SQLAlchemyAsyncConfig(
        engine_instance=engine,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        create_all=False,
        set_default_exception_handler=False,
        engine_config=EngineConfig(),
    )
    # The key is only known now: each config in a process gets its own.
    config.before_send_handler = _request_transaction(config.session_scope_key)
    return SQLAlchemyPlugin(config=config)
