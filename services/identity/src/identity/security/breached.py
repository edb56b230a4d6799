"""Is a password known from breaches? Pwned Passwords' k-anonymity range API, or a shipped list.

Only the first five hex characters of the password's SHA-1 ever leave the machine: the range
API answers every hash suffix it knows under that prefix (``SUFFIX:COUNT`` lines), and the
match is made here. The shipped list (``data/pwned-passwords.txt.gz``: about 40,000 of the most
common passwords, one ``SHA1:COUNT`` line each) is served through the same range format, so one
code path reads both; it is used when no API is configured or the API does not answer in time.
"""

from __future__ import annotations

import gzip
import hashlib
from collections import defaultdict
from functools import cached_property
from pathlib import Path

import httpx
import structlog

log = structlog.get_logger("identity.breached")

OFFLINE_LIST = Path(__file__).resolve().parent.parent / "data" / "pwned-passwords.txt.gz"
PREFIX_LENGTH = 5


def sha1_hex(password: str) -> str:
    return hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


def count_in_range(range_body: str, suffix: str) -> int:
    """How often the suffix appears in a range answer (0 when absent or a padding line)."""
    suffix = suffix.upper()
    for line in range_body.splitlines():
        found, _, count = line.strip().partition(":")
        if found.upper() == suffix:
            try:
                return int(count)
            except ValueError:
                return 1
    return 0


class OfflineList:
    """The shipped list, grouped by prefix the first time it is asked."""

    def __init__(self, path: Path = OFFLINE_LIST) -> None:
        self.path = path

    @cached_property
    def _ranges(self) -> dict[str, str]:
        grouped: dict[str, list[str]] = defaultdict(list)
        with gzip.open(self.path, "rt", encoding="ascii") as lines:
            for line in lines:
                entry = line.strip()
                if len(entry) > 40 and entry[40] == ":":
                    grouped[entry[:PREFIX_LENGTH]].append(entry[PREFIX_LENGTH:])
        return {prefix: "\n".join(suffixes) for prefix, suffixes in grouped.items()}

    def range(self, prefix: str) -> str:
        return self._ranges.get(prefix.upper(), "")

    def __len__(self) -> int:
        return sum(body.count("\n") + 1 for body in self._ranges.values())


class BreachedPasswords:
    def __init__(
        self,
        api_url: str | None,
        *,
        timeout_ms: int = 2000,
        offline: OfflineList | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/") if api_url else None
        self.timeout = timeout_ms / 1000
        self.offline = offline or OfflineList()
        self.client = client

    async def range(self, prefix: str) -> tuple[str, str]:
        """The range answer for ``prefix`` and where it came from (``api`` or ``offline``)."""
        if len(prefix) != PREFIX_LENGTH:
            raise ValueError("a range prefix is five hex characters")
        if self.api_url:
            try:
                return await self._fetch(prefix), "api"
            except (httpx.HTTPError, UnicodeDecodeError) as exc:
                log.warning("hibp_unavailable", error=type(exc).__name__)
        return self.offline.range(prefix), "offline"

    async def _fetch(self, prefix: str) -> str:
        # Add-Padding makes every answer about the same size, so an observer of the encrypted
        # traffic cannot guess the prefix from the length.
        headers = {"Add-Padding": "true", "User-Agent": "ember-identity"}
        url = f"{self.api_url}/range/{prefix}"
        if self.client is not None:
            response = await self.client.get(url, headers=headers, timeout=self.timeout)
        else:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(url, headers=headers)
        response.raise_for_status()
        return response.text

    async def times_seen(self, password: str) -> int:
        digest = sha1_hex(password)
        body, _ = await self.range(digest[:PREFIX_LENGTH])
        return count_in_range(body, digest[PREFIX_LENGTH:])

    async def is_breached(self, password: str) -> bool:
        return await self.times_seen(password) > 0
