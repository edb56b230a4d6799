"""Reading the shop's HTML forms: bounded strings and numbers, never trusting the browser."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request


class Form:
    """A posted form (urlencoded or multipart), read field by field with bounds."""

    def __init__(self, data: Any) -> None:
        self.data = data

    @classmethod
    async def of(cls, request: Request[Any, Any, Any]) -> Form:
        return cls(await request.form())

    def text(self, name: str, max_length: int = 200) -> str:
        value = self.data.get(name)
        if not isinstance(value, str):
            return ""
        # Control characters have no place in a form field (a pasted tab or newline aside).
        cleaned = "".join(ch for ch in value if ch in "\n\t" or ch.isprintable())
        return cleaned.strip()[:max_length]

    def integer(
        self, name: str, default: int | None = None, lo: int = 0, hi: int = 1_000_000
    ) -> int | None:
        raw = self.text(name, 12)
        try:
            value = int(raw)
        except ValueError:
            return default
        return value if lo <= value <= hi else default

    def uuid(self, name: str) -> uuid.UUID | None:
        try:
            return uuid.UUID(self.text(name, 40))
        except ValueError:
            return None

    def flag(self, name: str) -> bool:
        return self.text(name, 8).lower() in {"1", "on", "true", "yes"}

    def file(self, name: str) -> Any:
        return self.data.get(name)
