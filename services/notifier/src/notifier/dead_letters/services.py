"""The shop's event dead letters, for staff: see why a consumer gave up, then replay or discard.

Every service's consumers write to one dead-letter stream (``ember_shared.events.dead_letters``);
the notifier serves the staff view of it under ``/api/admin/emails/dead-letters``. A replay
puts the message back on its stream for the one consumer group that gave up on it.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from ember_shared.events import dead_letters
from ember_shared.events.dead_letters import DeadLetter
from ember_shared.problems import Problem, not_found
from redis.asyncio import Redis

from notifier.dead_letters.schemas import DeadLetterList, DeadLetterOut, Replayed

#: Keys whose values must not be shown, even to staff: a reset link carries a live token.
SECRET_KEYS = re.compile(r"(token|secret|password|reset_url|authorization)", re.I)
REDACTED = "[redacted]"
MAX_ID_PART = 2**64 - 1


def valid_entry_id(value: str) -> bool:
    """A Redis stream id Redis itself would accept (both parts fit 64 bits)."""
    head, _, tail = value.partition("-")
    return head.isdigit() and tail.isdigit() and max(int(head), int(tail)) <= MAX_ID_PART


def redact(payload: str) -> str:
    try:
        value = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return payload
    return msgspec.json.encode(_redact(value)).decode()


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if SECRET_KEYS.search(str(k)) else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def view(letter: DeadLetter) -> DeadLetterOut:
    fields = msgspec.structs.asdict(letter)
    fields["payload"] = redact(letter.payload)
    return DeadLetterOut(**fields)


class DeadLetterService:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def page(self, *, service: str | None, limit: int, before: str | None) -> DeadLetterList:
        if before is not None and not valid_entry_id(before):
            raise Problem(400, "validation", "`before` is not a dead letter id.")
        if before is not None and not any(int(part) for part in before.split("-")):
            # Nothing is older than 0-0 (and Redis refuses the empty range it would make).
            total = await dead_letters.count_dead_letters(self.redis)
            return DeadLetterList(items=[], next_before=None, total=total)
        page = await dead_letters.list_dead_letters(
            self.redis, service=service, limit=limit, before=before
        )
        return DeadLetterList(
            items=[view(letter) for letter in page.items],
            next_before=page.next_before,
            total=await dead_letters.count_dead_letters(self.redis),
        )

    async def get(self, letter_id: str) -> DeadLetterOut:
        letter = await self._find(letter_id)
        if letter is None:
            raise not_found("dead letter")
        return view(letter)

    async def _find(self, letter_id: str) -> DeadLetter | None:
        if not valid_entry_id(letter_id):
            return None
        return await dead_letters.get_dead_letter(self.redis, letter_id)

    async def replay(self, letter_id: str) -> Replayed:
        letter = await self._find(letter_id)
        if letter is None:
            raise not_found("dead letter", "No such dead letter: it may have been replayed.")
        message_id = await dead_letters.replay_dead_letter(self.redis, letter_id)
        if message_id is None:
            raise not_found("dead letter", "No such dead letter: it may have been replayed.")
        return Replayed(
            dead_letter_id=letter_id,
            service=letter.service,
            stream=letter.stream,
            message_id=message_id,
        )

    async def discard(self, letter_id: str) -> None:
        if not valid_entry_id(letter_id) or not await dead_letters.discard_dead_letter(
            self.redis, letter_id
        ):
            raise not_found("dead letter")
