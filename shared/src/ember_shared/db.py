"""Database wiring: advanced-alchemy on asyncpg, one Postgres schema per service.

Each service declares its models on the base that :func:`service_base` makes for its schema,
so its tables (and its outbox and handled-events tables) are created in that schema only.
Handlers get an ``AsyncSession`` as ``db_session``; the request owns the transaction and it is
committed when the response is a success (polar's rule: services and repositories never commit).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from advanced_alchemy.base import CommonTableAttributes, convention, create_registry
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import MetaData, func
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column, registry

from ember_shared.events.tables import define_event_tables
from ember_shared.ids import new_id
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
        "pool_pre_ping": True,
        "echo": settings.db.echo,
        # asyncpg caches prepared statements per connection; names must not clash behind pgbouncer.
        "connect_args": {"server_settings": {"application_name": settings.app.name}},
    }


def make_engine(settings: ServiceSettings) -> AsyncEngine:
    return create_async_engine(settings.db.async_url, **engine_options(settings))


def sqlalchemy_plugin(settings: ServiceSettings, engine: AsyncEngine) -> SQLAlchemyPlugin:
    config = SQLAlchemyAsyncConfig(
        engine_instance=engine,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        before_send_handler="autocommit",
        create_all=False,
        set_default_exception_handler=False,
        engine_config=EngineConfig(),
    )
    return SQLAlchemyPlugin(config=config)
