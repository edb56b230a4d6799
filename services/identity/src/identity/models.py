"""Tables of the identity service, all in Postgres schema ``identity``.

Secrets are never stored as given: passwords as Argon2id hashes, session (refresh) tokens and
password-reset and sign-up tokens as SHA-256 digests (invariant 15).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from advanced_alchemy.types import DateTimeUTC
from ember_shared.db import EntityColumns, service_base
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

if TYPE_CHECKING:
    # service_base() builds the class at run time; to mypy it is a DeclarativeBase.
    from sqlalchemy.orm import DeclarativeBase as Base
else:
    Base = service_base("identity")

__all__ = [
    "ROLES",
    "ROLE_ADMIN",
    "ROLE_CUSTOMER",
    "Address",
    "AuditEntry",
    "Base",
    "OAuthLink",
    "PasswordResetToken",
    "Session",
    "SignUp",
    "User",
]

ROLE_CUSTOMER = "customer"
ROLE_ADMIN = "admin"
ROLES = (ROLE_CUSTOMER, ROLE_ADMIN)


class User(EntityColumns, Base):
    __tablename__ = "users"
    __table_args__ = (
        # Stored lower-cased (the CHECK holds every writer to it), so UNIQUE(email) is
        # case-insensitive uniqueness.
        UniqueConstraint("email"),
        CheckConstraint("role IN ('customer', 'admin')", name="role_known"),
        CheckConstraint("email = lower(email)", name="email_lower"),
    )

    email: Mapped[str] = mapped_column(String(254), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False, server_default="")
    phone: Mapped[str] = mapped_column(String(32), nullable=False, server_default="")
    #: None for an account that only ever signed in with Google.
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False, server_default=ROLE_CUSTOMER)
    #: Proven by the sign-up link, a Google sign-in or a completed password reset.
    email_verified: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    last_sign_in_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True))

    @property
    def roles(self) -> list[str]:
        # An admin is also a customer: they can shop, and customer guards let them through.
        return [ROLE_CUSTOMER, ROLE_ADMIN] if self.role == ROLE_ADMIN else [ROLE_CUSTOMER]

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None


class Session(EntityColumns, Base):
    """A sign-in: its id is the ``sid`` of every access token minted for it."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_user_live", "user_id", postgresql_where=text("revoked_at IS NULL")),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("identity.users.id", ondelete="CASCADE"), nullable=False
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    #: The refresh token this one replaced: shown again after the grace period, it means the
    #: token was copied, and the session is ended.
    previous_token_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), nullable=False)
    last_used_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), nullable=False, server_default=func.now()
    )
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(40))
    method: Mapped[str] = mapped_column(String(16), nullable=False, server_default="password")
    ip: Mapped[str] = mapped_column(String(64), nullable=False, server_default="")
    user_agent: Mapped[str] = mapped_column(String(255), nullable=False, server_default="")


class PasswordResetToken(EntityColumns, Base):
    """At most one per user (a new request replaces the old one)."""

    __tablename__ = "password_reset_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("identity.users.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), nullable=False)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True))


class SignUp(EntityColumns, Base):
    """A request for an account, waiting for its emailed link to be opened.

    The account is made only then, from this row: until the address is proved, no ``users`` row
    exists, so neither the answer to sign-up nor sign-in can tell a newcomer from a customer.
    Each request has its own link (a second request does not change the first one's password).
    """

    __tablename__ = "sign_ups"

    email: Mapped[str] = mapped_column(String(254), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False, server_default="")
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    expires_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), nullable=False, index=True
    )
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True))


class OAuthLink(EntityColumns, Base):
    __tablename__ = "oauth_links"
    __table_args__ = (
        UniqueConstraint("provider", "subject"),
        UniqueConstraint("user_id", "provider"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("identity.users.id", ondelete="CASCADE"), nullable=False
    )
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    #: The provider's stable user id (``sub``), never the email, which can change hands.
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    email: Mapped[str] = mapped_column(String(254), nullable=False)


class Address(EntityColumns, Base):
    __tablename__ = "addresses"
    __table_args__ = (
        Index(
            "uq_addresses_one_default",
            "user_id",
            unique=True,
            postgresql_where=text("is_default"),
        ),
        CheckConstraint("country ~ '^[A-Z]{2}$'", name="country_iso2"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("identity.users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    phone: Mapped[str] = mapped_column(String(32), nullable=False, server_default="")
    line1: Mapped[str] = mapped_column(String(200), nullable=False)
    line2: Mapped[str] = mapped_column(String(200), nullable=False, server_default="")
    city: Mapped[str] = mapped_column(String(100), nullable=False)
    state: Mapped[str] = mapped_column(String(100), nullable=False, server_default="")
    postal_code: Mapped[str] = mapped_column(String(20), nullable=False)
    country: Mapped[str] = mapped_column(String(2), nullable=False)
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())


class AuditEntry(EntityColumns, Base):
    """Who did what to which account; kept when the account goes (no foreign keys)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_user", "user_id", "created_at"),
        Index("ix_audit_log_action", "action", "created_at"),
    )

    action: Mapped[str] = mapped_column(String(40), nullable=False)
    user_id: Mapped[uuid.UUID | None] = mapped_column()
    actor_id: Mapped[uuid.UUID | None] = mapped_column()
    email: Mapped[str] = mapped_column(String(254), nullable=False, server_default="")
    ip: Mapped[str] = mapped_column(String(64), nullable=False, server_default="")
    user_agent: Mapped[str] = mapped_column(String(255), nullable=False, server_default="")
    detail: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
