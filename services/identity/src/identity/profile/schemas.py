"""Bodies of ``/api/user/*``: profile, password change, sessions, addresses."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec

from identity.accounts.schemas import NewPassword, Password, UserOut

# No control characters (Postgres refuses NUL; none belong on a label); at least one visible one.
_LINE = r"^[^\x00-\x1f\x7f]*$"
_REQUIRED_LINE = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"


def Line(max_length: int, *, required: bool, description: str = "") -> object:  # noqa: N802
    return msgspec.Meta(
        min_length=1 if required else 0,
        max_length=max_length,
        pattern=_REQUIRED_LINE if required else _LINE,
        description=description or None,
    )


Phone = Annotated[
    str,
    msgspec.Meta(
        max_length=32, pattern=r"^[0-9+()./ -]*$", description="Digits, spaces and + ( ) . / -"
    ),
]


class ProfileOut(UserOut):
    #: Providers this account can also sign in with (``google``).
    linked_providers: list[str]


class ProfileUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Fields left out keep their value."""

    name: Annotated[str, Line(120, required=False)] | None = None
    phone: Phone | None = None


class ChangePasswordRequest(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Password
    new_password: NewPassword


class SetPasswordRequest(msgspec.Struct, forbid_unknown_fields=True):
    new_password: NewPassword


class PasswordChangedOut(msgspec.Struct):
    status: str
    other_sessions_ended: int


class SessionItem(msgspec.Struct):
    id: uuid.UUID
    method: str
    current: bool
    ip: str
    user_agent: str
    created_at: dt.datetime
    last_used_at: dt.datetime
    expires_at: dt.datetime


class SessionList(msgspec.Struct):
    items: list[SessionItem]


class AddressIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Line(120, required=True, description="Recipient's name.")]
    line1: Annotated[str, Line(200, required=True)]
    city: Annotated[str, Line(100, required=True)]
    postal_code: Annotated[
        str, msgspec.Meta(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]*$")
    ]
    country: Annotated[
        str,
        msgspec.Meta(
            min_length=2,
            max_length=2,
            pattern=r"^[A-Za-z]{2}$",
            description="ISO 3166-1 alpha-2 code.",
            examples=["US"],
        ),
    ]
    line2: Annotated[str, Line(200, required=False)] = ""
    state: Annotated[str, Line(100, required=False)] = ""
    phone: Phone = ""
    #: Make this the default address (the previous default stops being one).
    is_default: bool | None = None


class AddressOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    phone: str
    line1: str
    line2: str
    city: str
    state: str
    postal_code: str
    country: str
    is_default: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class AddressList(msgspec.Struct):
    items: list[AddressOut]
