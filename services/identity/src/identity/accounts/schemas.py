"""Request and response bodies of ``/api/auth/*``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec

#: The WHATWG e-mail grammar (what browsers accept), ASCII only and with a dot in the domain;
#: ASCII keeps case-folding identical in Python and in Postgres.
EMAIL_PATTERN = (
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)

Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=254,
        pattern=EMAIL_PATTERN,
        description="An e-mail address; compared case-insensitively.",
        examples=["ada@example.com"],
    ),
]
#: Bounded generously here; the policy (length from settings, not breached) answers 422.
NewPassword = Annotated[
    str, msgspec.Meta(min_length=1, max_length=1024, description="The new password.")
]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
PersonName = Annotated[str, msgspec.Meta(max_length=120, pattern=r"^[^\x00-\x1f\x7f]*$")]


def normalize_email(email: str) -> str:
    return email.strip().lower()


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: NewPassword
    name: PersonName = ""


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password


class ForgotPasswordRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email


EmailedToken = Annotated[
    str, msgspec.Meta(min_length=16, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")
]


class ResetPasswordRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: EmailedToken
    password: NewPassword


class VerifyEmailRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The token of the link a sign-up mailed (``/verify-email?token=...``)."""

    token: EmailedToken


class UserOut(msgspec.Struct):
    id: uuid.UUID
    email: str
    name: str
    phone: str
    roles: list[str]
    email_verified: bool
    has_password: bool
    created_at: dt.datetime


class SessionOut(msgspec.Struct):
    id: uuid.UUID
    method: str
    created_at: dt.datetime
    expires_at: dt.datetime


class SignedIn(msgspec.Struct):
    """The access token is also set as the ``ember_access`` cookie; API clients use this copy
    as ``Authorization: Bearer``. ``csrf_token`` equals the ``ember_csrf`` cookie."""

    user: UserOut
    access_token: str
    token_type: str
    expires_in: int
    expires_at: dt.datetime
    csrf_token: str
    session_id: uuid.UUID


class MeOut(msgspec.Struct):
    user: UserOut
    session_id: str


class Accepted(msgspec.Struct):
    status: str
    detail: str


class Done(msgspec.Struct):
    status: str
    detail: str = ""
