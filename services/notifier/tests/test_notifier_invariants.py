"""Invariant 8: email is sent only by the notifier worker, from its outbox.

Only one module of the whole repository may import the ``resend`` SDK: the notifier's sender,
which the worker uses. The API process (event handlers, webhooks, admin) does not even load it,
and an event it consumes leaves only a queued row that a worker pass sends.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from ember_devkit.devstack import layout
from ember_shared.events import stream_for
from ember_shared.settings import repo_root
from notifier.worker import EmailWorker
from notifier_testkit import (
    Standin,
    attempts_of,
    email_by_id,
    emails_to,
    envelope,
    order_paid,
    publish,
    unique_address,
    until,
)
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

SENDER = Path("services/notifier/src/notifier/emails/sender.py")
SKIP = {".venv", ".git", ".data", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}
IMPORTS_RESEND = re.compile(
    r"^\s*(?:import\s+resend\b|from\s+resend\b|.*import_module\(\s*[\"']resend[\"'])", re.M
)
SENDS_MAIL = re.compile(r"\bEmails\.send(?:_async)?\b|api\.resend\.com/emails")


def python_files(root: Path) -> list[Path]:
    found = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if SKIP.intersection(relative.parts):
            continue
        found.append(relative)
    return found


def test_only_the_notifier_sender_imports_resend() -> None:
    root = repo_root()
    files = python_files(root)
    assert len(files) > 50, "the scan should see the whole source tree"
    importers = {p for p in files if IMPORTS_RESEND.search((root / p).read_text(encoding="utf-8"))}
    assert importers == {SENDER}


def test_only_the_notifier_sender_calls_the_send_api() -> None:
    root = repo_root()
    callers = {
        p for p in python_files(root) if SENDS_MAIL.search((root / p).read_text(encoding="utf-8"))
    }
    assert callers == {SENDER}


def test_the_api_process_does_not_load_the_sdk() -> None:
    # Event handlers only queue: building the API app must not even import resend.
    probe = (
        "import sys; import notifier.app, notifier.events; "
        "print('resend' in sys.modules, 'notifier.emails.sender' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == ["False", "False"]


def test_the_devstack_runs_the_notifier_worker() -> None:
    # The devstack starts ``python -m <service>.worker`` for each service that has that module.
    assert "notifier" in layout.workers()


async def test_the_api_process_only_queues_and_the_worker_sends(
    fresh: None,
    notifier_url: str,
    engine: AsyncEngine,
    worker: EmailWorker,
    resend_standin: Standin,
    ember_env: Any,
) -> None:
    """An event read by the served app's consumer (real Redis stream) leaves a queued row and
    nothing else; the mail reaches Resend only in a worker pass."""
    to = unique_address("invariant8")
    event = envelope(order_paid(to))
    redis = Redis.from_url(ember_env.redis_url)
    try:
        await publish(redis, event)

        async def acknowledged() -> bool:
            # The consumer acknowledges after the handler (and its after-commit work) is done,
            # so whatever the API process does with this event has happened by then.
            rows = await emails_to(engine, to)
            summary = await redis.xpending(stream_for(event.type), "notifier")
            return bool(rows) and int(summary["pending"]) == 0

        await until(acknowledged)
    finally:
        await redis.aclose()

    (email,) = await emails_to(engine, to)
    assert (email.status, email.attempts, email.sent_at, email.provider_message_id) == (
        "queued",
        0,
        None,
        None,
    )
    assert await attempts_of(engine, email.id) == []
    assert resend_standin.emails(to) == []

    assert await worker.run_once() == 1
    sent = await email_by_id(engine, email.id)
    assert sent.status == "sent"
    assert [m["id"] for m in resend_standin.emails(to)] == [sent.provider_message_id]
