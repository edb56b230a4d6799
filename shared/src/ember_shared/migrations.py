"""Alembic, one history per service, each confined to its own Postgres schema.

Each service keeps its history in ``src/<service>/migrations``; its ``env.py`` is two lines that
call :func:`run_env`. Use the command line for both directions:

    uv run python -m ember_shared.migrations upgrade catalog
    uv run python -m ember_shared.migrations revision catalog -m "add products"
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ember_shared.settings import DatabaseSettings

SERVICES_WITH_SCHEMAS = ("identity", "catalog", "cart", "checkout", "orders", "notifier")


def alembic_config(service: str, database_url: str | None = None) -> Config:
    package = importlib.import_module(service)
    assert package.__file__ is not None
    location = Path(package.__file__).parent / "migrations"
    config = Config()
    config.set_main_option("script_location", str(location))
    config.set_main_option("version_locations", str(location / "versions"))
    config.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    config.attributes["service"] = service
    config.attributes["database_url"] = database_url or DatabaseSettings().async_url
    return config


def upgrade(service: str, database_url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, database_url), revision)


def run_env(metadata: MetaData) -> None:
    """The body of every service's ``env.py``: migrate ``metadata.schema`` and nothing else."""
    schema = metadata.schema
    assert schema, "a service's metadata must name its schema"
    url = context.config.attributes.get("database_url") or DatabaseSettings().async_url

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "schema":
            return name == schema
        return True

    def run(connection: Connection) -> None:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=metadata,
            include_schemas=True,
            include_name=include_name,
            version_table_schema=schema,
            version_table="alembic_version",
            compare_type=True,
        )
        with context.begin_transaction():
            # One migrator per schema at a time, even with many replicas starting together.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": f"migrate:{schema}"}
            )
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            await connection.run_sync(run)
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(
            url=url, target_metadata=metadata, include_schemas=True, version_table_schema=schema
        )
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ember_shared.migrations")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="apply migrations (all services when none is named)")
    up.add_argument("services", nargs="*", default=list(SERVICES_WITH_SCHEMAS))
    rev = sub.add_parser("revision", help="autogenerate a new migration from the models")
    rev.add_argument("service")
    rev.add_argument("-m", "--message", required=True)
    args = parser.parse_args()
    if args.command == "upgrade":
        for service in args.services:
            upgrade(service)
            print(f"migrated {service}")
    else:
        command.revision(alembic_config(args.service), message=args.message, autogenerate=True)


if __name__ == "__main__":
    main()


def create_event_tables(schema: str) -> None:
    """Migration step every service starts with: its outbox and handled-events tables.

    Kept here, once, because the tables are the same in every schema
    (:func:`ember_shared.events.tables.define_event_tables` is their model).
    """
    import sqlalchemy as sa
    from alembic import op

    op.create_table(
        "handled_events",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("handler", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=120), nullable=False),
        sa.Column(
            "handled_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("event_id", "handler", name=op.f("pk_handled_events")),
        schema=schema,
    )
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("type", sa.String(length=120), nullable=False),
        sa.Column("stream", sa.String(length=200), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        schema=schema,
    )
    op.create_index(
        "ix_outbox_events_unpublished",
        "outbox_events",
        ["created_at"],
        unique=False,
        schema=schema,
        postgresql_where=sa.text("published_at IS NULL"),
    )


def drop_event_tables(schema: str) -> None:
    from alembic import op

    op.drop_index("ix_outbox_events_unpublished", table_name="outbox_events", schema=schema)
    op.drop_table("outbox_events", schema=schema)
    op.drop_table("handled_events", schema=schema)
