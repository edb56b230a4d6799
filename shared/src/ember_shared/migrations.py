"""Alembic, one history per service, each confined to its own Postgres schema.

Each service keeps its history in ``src/<service>/migrations``; its ``env.py`` is two lines that
call :func:`run_env`. Use the command line for both directions:

    uv run python -m ember_shared.migrations upgrade catalog
    uv run python -m ember_shared.migrations revision catalog -m "add products"

In production the migrator owns the schemas and every service logs in as a role of its own with
rights on its own schema only (issue 10): ``upgrade --roles`` (or ``roles`` alone) creates or
updates the roles ``ember_<service>``, each with the password of ``<SERVICE>_DATABASE_URL`` (the
URL that service's container gets as its DATABASE_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ember_shared.settings import DatabaseSettings, with_driver

SERVICES_WITH_SCHEMAS = ("identity", "catalog", "cart", "checkout", "orders", "notifier")
#: Every service that logs in to Postgres; the storefront has no schema (its readiness probe only
#: connects), so its role gets no rights on any schema.
SERVICES_WITH_ROLES = (*SERVICES_WITH_SCHEMAS, "storefront")
ROLE_PREFIX = "ember_"


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


def role_url_variable(service: str) -> str:
    """The setting holding ``service``'s own URL (``ORDERS_DATABASE_URL``): the service's
    container gets it as its DATABASE_URL, the migrator reads the role's password from it."""
    return f"{service.upper()}_DATABASE_URL"


def role_passwords(
    environ: Mapping[str, str] | None = None, prefix: str = ROLE_PREFIX
) -> dict[str, str]:
    """Every service's role password, from its ``<SERVICE>_DATABASE_URL``: all of them, or an
    error naming what is wrong (a production migrator never leaves a service on the owner's role
    silently, nor gives a role a name the service does not log in with)."""
    environ = os.environ if environ is None else environ
    found: dict[str, str] = {}
    problems: list[str] = []
    for service in SERVICES_WITH_ROLES:
        variable = role_url_variable(service)
        parts = urlsplit(environ.get(variable, ""))
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        if user != f"{prefix}{service}" or not password:
            problems.append(f"{variable} (postgresql://{prefix}{service}:<password>@host/db)")
        found[service] = password
    if problems:
        raise SystemExit(f"set {', '.join(problems)}: each service's own Postgres role")
    return found


def grant_service_roles(
    passwords: Mapping[str, str], database_url: str | None = None, prefix: str = ROLE_PREFIX
) -> list[str]:
    """Create (or update) one login role per service with rights on its own schema only.

    Run as the migrator, the owner of every schema, after the migrations: the role may read and
    write the rows of its schema's tables (present and future: default privileges of the owner)
    and use its sequences, and nothing else: no DDL, no other schema; PUBLIC loses every right on
    the schemas. Idempotent: run it on every rollout (a changed password is set again, rights
    granted by hand on another service's schema are taken back). Returns the roles' names.
    """
    # The runtime's own driver (asyncpg): a production image carries no second one.
    return asyncio.run(_grant_service_roles(passwords, database_url, prefix))


async def _grant_service_roles(
    passwords: Mapping[str, str], database_url: str | None, prefix: str
) -> list[str]:
    engine = create_async_engine(with_driver(database_url or DatabaseSettings().url, "asyncpg"))
    roles: list[str] = []
    try:
        async with engine.begin() as connection:
            # One migrator at a time, as for the migrations themselves.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext('migrate:roles'))")
            )
            for schema in SERVICES_WITH_SCHEMAS:
                await connection.execute(text(f'REVOKE ALL ON SCHEMA "{schema}" FROM PUBLIC'))
                await connection.execute(
                    text(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM PUBLIC')
                )
            for service, password in passwords.items():
                role = f"{prefix}{service}"
                exists = (
                    await connection.execute(
                        text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
                    )
                ).first()
                if not exists:
                    await connection.execute(text(f'CREATE ROLE "{role}" LOGIN'))
                # Quoted by the server (%L): the password never becomes SQL.
                statement = (
                    await connection.execute(
                        text(
                            "SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', CAST(:r AS text), CAST(:p AS text))"
                        ),
                        {"r": role, "p": password},
                    )
                ).scalar_one()
                await connection.execute(text(statement))
                for schema in SERVICES_WITH_SCHEMAS:
                    if schema == service:
                        continue
                    await connection.execute(
                        text(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM "{role}"')
                    )
                    await connection.execute(
                        text(f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA "{schema}" FROM "{role}"')
                    )
                    await connection.execute(text(f'REVOKE ALL ON SCHEMA "{schema}" FROM "{role}"'))
                if service in SERVICES_WITH_SCHEMAS:
                    schema = service
                    tables = "SELECT, INSERT, UPDATE, DELETE"
                    sequences = "USAGE, SELECT, UPDATE"
                    for sql in (
                        f'REVOKE CREATE ON SCHEMA "{schema}" FROM "{role}"',
                        f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"',
                        f'GRANT {tables} ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"',
                        f'GRANT {sequences} ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"',
                        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT {tables} ON TABLES TO "{role}"',
                        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT {sequences} ON SEQUENCES TO "{role}"',
                    ):
                        await connection.execute(text(sql))
                roles.append(role)
    finally:
        await engine.dispose()
    return roles


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
    up.add_argument(
        "--roles",
        action="store_true",
        help="then create every service's own role (passwords from <SERVICE>_DATABASE_URL)",
    )
    sub.add_parser("roles", help="create every service's own role, rights on its schema only")
    rev = sub.add_parser("revision", help="autogenerate a new migration from the models")
    rev.add_argument("service")
    rev.add_argument("-m", "--message", required=True)
    args = parser.parse_args()
    if args.command in ("upgrade", "roles"):
        # Read before migrating: a missing password fails the rollout before anything changes.
        passwords = role_passwords() if args.command == "roles" or args.roles else None
        for service in args.services if args.command == "upgrade" else ():
            upgrade(service)
            print(f"migrated {service}")
        if passwords is not None:
            for role in grant_service_roles(passwords):
                print(f"granted {role}")
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
