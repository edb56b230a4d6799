"""Bodies of ``/api/admin/users*``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

import msgspec
from ember_shared.pagination import Page


class AdminUserOut(msgspec.Struct):
    id: uuid.UUID
    email: str
    name: str
    roles: list[str]
    email_verified: bool
    has_password: bool
    disabled: bool
    disabled_at: dt.datetime | None
    last_sign_in_at: dt.datetime | None
    created_at: dt.datetime


UserPage = Page[AdminUserOut]


class RoleChange(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["customer", "admin"]


class AuditOut(msgspec.Struct):
    id: uuid.UUID
    action: str
    user_id: uuid.UUID | None
    actor_id: uuid.UUID | None
    email: str
    ip: str
    user_agent: str
    detail: dict[str, Any]
    created_at: dt.datetime


AuditPage = Page[AuditOut]
