"""One Postgres role per service, rights on its own schema only (issue 10, finding 12).

The migrator's step (``python -m ember_shared.migrations upgrade --roles``) is run on the test
database, as docker-compose.yml and the Kubernetes Job run it; then the orders app, built with a
DATABASE_URL for its own role, serves its routes, while a connection as that role can neither
read checkout's sessions nor put a fake event in checkout's outbox nor change any table's shape.
A right granted by hand on another service's schema is taken back by the next rollout's step.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from ember_devkit.testing.apps import asgi_client, running
from ember_devkit.testing.plugin import TestEnv as EmberEnv
from ember_devkit.testing.tokens import TokenFactory
from ember_shared.migrations import (
    SERVICES_WITH_ROLES,
    grant_service_roles,
    role_passwords,
    role_url_variable,
)
from ember_shared.settings import service_settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import ProgrammingError

#: Roles are the server's, not the database's: a prefix of this session's own keeps two test
#: sessions on one server (each with its own database) from sharing them.
PREFIX = f"ember_t{os.getpid()}_"


def psycopg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def as_role(database_url: str, role: str, password: str) -> str:
    parts = urlsplit(database_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))


@pytest.fixture(scope="module")
def roles(ember_env: EmberEnv) -> Iterator[dict[str, str]]:
    """Each service's role URL, made by the migrator's step (run twice: it is idempotent)."""
    passwords = {service: secrets.token_hex(16) for service in SERVICES_WITH_ROLES}
    made = grant_service_roles(passwords, ember_env.database_url, prefix=PREFIX)
    assert made == grant_service_roles(passwords, ember_env.database_url, prefix=PREFIX)
    assert made == [f"{PREFIX}{service}" for service in SERVICES_WITH_ROLES]
    try:
        yield {
            service: as_role(ember_env.database_url, f"{PREFIX}{service}", password)
            for service, password in passwords.items()
        }
    finally:
        owner = create_engine(psycopg(ember_env.database_url))
        with owner.begin() as connection:
            for role in made:
                connection.execute(text(f'DROP OWNED BY "{role}"'))
                connection.execute(text(f'DROP ROLE "{role}"'))
        owner.dispose()


@pytest.fixture
def orders_engine(roles: dict[str, str]) -> Iterator[Engine]:
    engine = create_engine(psycopg(roles["orders"]))
    yield engine
    engine.dispose()


def refused(engine: Engine, sql: str) -> str:
    """The error Postgres answers ``sql`` with (the test fails if it is allowed)."""
    with engine.connect() as connection, pytest.raises(ProgrammingError) as caught:
        connection.execute(text(sql))
    return str(caught.value.orig)


async def test_orders_serves_under_its_own_role(
    roles: dict[str, str], tokens: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orders.app import create_app

    monkeypatch.setenv("DATABASE_URL", roles["orders"])
    monkeypatch.setenv("TRACKING_POLLER_ENABLED", "false")
    service_settings.cache_clear()
    try:
        app = create_app()
        async with running(app), asgi_client(app) as client:
            ready = await client.get("/api/health/orders/ready")
            assert ready.status_code == 200, ready.text
            token, _ = tokens.admin()
            listed = await client.get(
                f"/api/admin/orders?q={uuid.uuid4()}", headers=tokens.bearer(token)
            )
            assert listed.status_code == 200, listed.text
            async with app.state.db_engine.connect() as connection:
                who = (await connection.execute(text("SELECT current_user"))).scalar_one()
            assert who == f"{PREFIX}orders"
    finally:
        monkeypatch.undo()
        service_settings.cache_clear()


def test_a_service_role_cannot_read_or_write_another_schema(
    ember_env: EmberEnv, orders_engine: Engine
) -> None:
    # The tables are there: the owner reads them (so a refusal below is about rights).
    owner = create_engine(psycopg(ember_env.database_url))
    with owner.connect() as connection:
        connection.execute(text("SELECT count(*) FROM checkout.checkout_sessions")).scalar_one()
    owner.dispose()
    with orders_engine.begin() as connection:
        connection.execute(text("SELECT count(*) FROM orders.orders")).scalar_one()
        connection.execute(text("SELECT count(*) FROM orders.outbox_events")).scalar_one()

    read = refused(orders_engine, "SELECT * FROM checkout.checkout_sessions")
    assert "permission denied for schema checkout" in read
    fake = refused(
        orders_engine,
        "INSERT INTO checkout.outbox_events (id, type, stream, envelope)"
        f" VALUES ('{uuid.uuid4()}', 'payment.succeeded', 'x', 'x')",
    )
    assert "permission denied for schema checkout" in fake
    for schema in ("identity", "catalog", "cart", "notifier"):
        assert "permission denied" in refused(
            orders_engine, f"SELECT * FROM {schema}.outbox_events"
        )
    # No DDL on its own schema either: the migrator owns it.
    assert "permission denied" in refused(orders_engine, "CREATE TABLE orders.x (id int)")
    assert "must be owner" in refused(orders_engine, "DROP TABLE orders.orders")
    assert "permission denied" in refused(orders_engine, "CREATE TABLE public.x (id int)")


def test_the_storefront_role_only_connects(roles: dict[str, str]) -> None:
    engine = create_engine(psycopg(roles["storefront"]))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
        for schema in ("identity", "catalog", "cart", "checkout", "orders", "notifier"):
            assert "permission denied" in refused(engine, f"SELECT * FROM {schema}.outbox_events")
    finally:
        engine.dispose()


def test_a_right_granted_by_hand_is_taken_back_by_the_next_rollout(
    ember_env: EmberEnv, roles: dict[str, str], orders_engine: Engine
) -> None:
    owner = create_engine(psycopg(ember_env.database_url))
    role = f"{PREFIX}orders"
    try:
        with owner.begin() as connection:
            connection.execute(text(f'GRANT USAGE ON SCHEMA checkout TO "{role}"'))
            connection.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA checkout TO "{role}"'))
        # The check above would see it: wide rights let orders read checkout's sessions.
        with orders_engine.connect() as connection:
            connection.execute(text("SELECT count(*) FROM checkout.checkout_sessions"))
        passwords = {s: urlsplit(url).password or "" for s, url in roles.items()}
        grant_service_roles(passwords, ember_env.database_url, prefix=PREFIX)
        assert "permission denied for schema checkout" in refused(
            orders_engine, "SELECT * FROM checkout.checkout_sessions"
        )
    finally:
        owner.dispose()


def test_the_migrator_refuses_to_run_without_every_role_password() -> None:
    environ = {
        role_url_variable(s): f"postgresql://ember_{s}:p%40ss-{s}@db:5432/ember"
        for s in SERVICES_WITH_ROLES
    }
    assert role_passwords(environ)["orders"] == "p@ss-orders"
    assert set(role_passwords(environ)) == set(SERVICES_WITH_ROLES)
    del environ["CHECKOUT_DATABASE_URL"]
    with pytest.raises(SystemExit, match="CHECKOUT_DATABASE_URL"):
        role_passwords(environ)
    # A URL naming the owner (or another service's role) is refused, not granted.
    environ["CHECKOUT_DATABASE_URL"] = "postgresql://ember:secret@db:5432/ember"
    with pytest.raises(SystemExit, match="CHECKOUT_DATABASE_URL"):
        role_passwords(environ)
    environ["CHECKOUT_DATABASE_URL"] = "postgresql://ember_checkout@db:5432/ember"
    with pytest.raises(SystemExit, match="CHECKOUT_DATABASE_URL"):
        role_passwords(environ)
