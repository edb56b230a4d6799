"""The stand-ins' state: the journal writes only what changed, and the Resend stand-in's look
for one address's mails (the benchmark's poll, many times a second) stays exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from standins.journal import Journal
from standins.resend import Store, validate_send

from standins import resend


def test_an_object_put_again_unchanged_is_not_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[tuple[Any, ...]] = []
    apply = Journal._apply

    def recording(db: Any, ops: list[tuple[Any, ...]]) -> None:
        written.extend(ops)
        apply(db, ops)

    monkeypatch.setattr(Journal, "_apply", staticmethod(recording))
    path = tmp_path / "state.sqlite3"
    journal = Journal(path)
    journal.put("session", "cs_1", {"status": "open"})
    # The Stripe stand-in journals every object an operation looked at.
    journal.put("session", "cs_1", {"status": "open"})
    journal.put("session", "cs_1", {"status": "complete"})
    journal.delete("session", "cs_1")
    journal.put("session", "cs_1", {"status": "complete"})
    assert journal.flush()
    journal.close()
    assert [(op[0], *op[-1:]) for op in written] == [
        ("put", '{"status":"open"}'),
        ("put", '{"status":"complete"}'),
        ("delete", "cs_1"),
        ("put", '{"status":"complete"}'),
    ]

    written.clear()
    reopened = Journal(path)
    assert reopened.load("session") == [("cs_1", {"status": "complete"})]
    reopened.put("session", "cs_1", {"status": "complete"})
    reopened.put("session", "cs_1", {"status": "expired"})
    assert reopened.flush()
    reopened.close()
    assert [op[-1] for op in written] == ['{"status":"expired"}']


def test_a_cleared_kind_is_written_again_when_put(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    journal = Journal(path)
    journal.put("email", "e1", {"to": ["a@example.com"]})
    journal.clear("email")
    journal.put("email", "e1", {"to": ["a@example.com"]})
    assert journal.flush()
    journal.close()
    assert Journal(path).load("email") == [("e1", {"to": ["a@example.com"]})]


def _mail(to: list[str]) -> dict[str, Any]:
    return validate_send(
        {"from": "Ember <orders@ember.local>", "to": to, "subject": "Hi", "text": "Hi"}
    )


def _every_mail_to(store: Store, address: str) -> list[str]:
    wanted = address.lower()
    return [
        e["id"] for e in reversed(store.emails.values()) if wanted in (a.lower() for a in e["to"])
    ]


def test_a_look_by_address_finds_exactly_its_mails_newest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resend, "MAX_KEPT_EMAILS", 5)
    path = tmp_path / "state.sqlite3"
    store = Store(path)
    sent = []
    for i in range(8):
        to = ["A@example.com"] if i % 2 else ["b@example.com", "a@example.com", "a@example.com"]
        email = _mail(to)
        store.add(email, None, "fingerprint")
        sent.append(email["id"])
    addresses = ("a@example.com", " A@EXAMPLE.COM ", "b@example.com", "nobody@example.com")
    for address in addresses:
        assert [e["id"] for e in store.matching(address)] == _every_mail_to(store, address.strip())
    # The oldest three were dropped; every kept mail went to a@ (in one case or another).
    assert [e["id"] for e in store.matching("a@example.com")] == sent[:2:-1]
    assert [e["id"] for e in store.matching(None)] == sent[:2:-1]
    assert store.journal.flush()
    store.close()

    restarted = Store(path)
    for address in addresses:
        assert [e["id"] for e in restarted.matching(address)] == _every_mail_to(
            restarted, address.strip()
        )
    assert len(restarted.matching("b@example.com")) == 2
    restarted.clear()
    assert restarted.matching("a@example.com") == []
    restarted.add(_mail(["a@example.com"]), None, "fingerprint")
    assert len(restarted.matching("a@example.com")) == 1
    restarted.close()
