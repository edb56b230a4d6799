"""Invariant 8: email is sent only by the notifier worker, from its outbox.

Only one module of the whole repository may import the ``resend`` SDK: the notifier's sender,
which the worker uses. The API process (event handlers, webhooks, admin) does not even load it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ember_shared.settings import repo_root

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


def test_the_worker_is_declared_for_the_devstack() -> None:
    import notifier
    from notifier import worker

    assert notifier.WORKER_ENTRYPOINT == worker.ENTRYPOINT == "notifier.worker:main"
    assert callable(worker.main)
