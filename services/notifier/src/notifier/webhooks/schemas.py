"""Resend's webhook payloads, as far as we read them (unknown members are ignored)."""

from __future__ import annotations

from typing import Annotated

import msgspec


class Bounce(msgspec.Struct, kw_only=True, rename="camel"):
    #: ``Permanent`` (a hard bounce: suppress), ``Transient`` (mailbox full: do not) or
    #: ``Undetermined``.
    type: str = ""
    sub_type: str = ""
    message: str = ""


class EmailEventData(msgspec.Struct, kw_only=True):
    email_id: Annotated[str, msgspec.Meta(max_length=100)] = ""
    to: list[str] | str = msgspec.field(default_factory=list)
    subject: str = ""
    bounce: Bounce | None = None

    @property
    def recipients(self) -> list[str]:
        return [self.to] if isinstance(self.to, str) else list(self.to)


class ResendWebhook(msgspec.Struct, kw_only=True):
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
    created_at: str = ""
    data: EmailEventData = msgspec.field(default_factory=EmailEventData)


class WebhookReceipt(msgspec.Struct, kw_only=True):
    received: bool
    duplicate: bool = False
    type: str = ""
