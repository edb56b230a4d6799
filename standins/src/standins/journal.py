"""Write-behind persistence for the stand-ins: changed objects go to SQLite from a thread.

A stand-in keeps its objects in memory (its answers must not wait on a disk) and hands each
object that changed to :meth:`Journal.put`. The object is serialized there, at once, so later
changes in memory cannot tear the copy; a single writer thread upserts whatever has queued up in
one transaction. Nothing is ever written whole, and the event loop never waits for the disk.

On start the stand-in reads everything back with :meth:`Journal.load`, in the order objects were
first put (Stripe lists events and sessions in that order).
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import structlog

log = structlog.get_logger("standins.journal")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS objects_by_seq ON objects (kind, seq);
"""

#: An operation for the writer: ("put", kind, key, seq, body) / ("delete", kind, key) / ...
_Op = tuple[Any, ...]
_STOP: _Op = ("stop",)


class Journal:
    """Objects by (kind, key), kept in a SQLite file; ``path=None`` keeps nothing."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._written = threading.Condition()
        #: The body last handed to the writer for each (kind, key): an object put again
        #: unchanged (the Stripe stand-in journals every object an operation looked at) is not
        #: written again.
        self._bodies: dict[tuple[str, str], str] = {}
        #: What an older stand-in kept as one JSON document, to be put again by its owner.
        self.legacy: dict[str, Any] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.legacy = _take_legacy(path)
            with self._connect() as db:
                db.executescript(_SCHEMA)
                self._seq = int(
                    db.execute("SELECT coalesce(max(seq), 0) FROM objects").fetchone()[0]
                )

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # --- reading (at start, before serving) ---------------------------------------------

    def load(self, kind: str) -> list[tuple[str, Any]]:
        """Every (key, object) of ``kind``, oldest first."""
        if self.path is None:
            return []
        with self._connect() as db:
            rows = db.execute(
                "SELECT key, body FROM objects WHERE kind = ? ORDER BY seq", (kind,)
            ).fetchall()
        found = []
        for key, body in rows:
            try:
                found.append((str(key), json.loads(body)))
            except ValueError:
                log.warning("journal_row_unreadable", kind=kind, key=key)
                continue
            self._bodies[(kind, str(key))] = body
        return found

    # --- writing ------------------------------------------------------------------------

    def put(self, kind: str, key: str, obj: Any) -> None:
        if self.path is None:
            return
        # msgspec: the same compact JSON as json.dumps (UTF-8 left as it is) at a fraction of
        # the CPU; every operation journals what it touched, on the loop the answers wait on.
        body = msgspec.json.encode(obj).decode()
        if self._bodies.get((kind, key)) == body:
            return
        self._bodies[(kind, key)] = body
        self._seq += 1
        self._send(("put", kind, key, self._seq, body))

    def put_many(self, kind: str, items: Iterable[tuple[str, Any]]) -> None:
        for key, obj in items:
            self.put(kind, key, obj)

    def delete(self, kind: str, key: str) -> None:
        if self.path is not None:
            self._bodies.pop((kind, key), None)
            self._send(("delete", kind, key))

    def clear(self, kind: str | None = None) -> None:
        if self.path is not None:
            if kind is None:
                self._bodies.clear()
            else:
                self._bodies = {k: v for k, v in self._bodies.items() if k[0] != kind}
            self._send(("clear", kind))

    def _send(self, op: _Op) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._write_forever, name="journal", daemon=True)
            self._thread.start()
        with self._written:
            self._pending += 1
        self._queue.put(op)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait (blocking: tests and shutdown only) until everything put is on disk."""
        with self._written:
            return self._written.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(10)
        self._thread = None

    def _write_forever(self) -> None:
        db = self._connect()
        try:
            while True:
                ops = [self._queue.get()]
                while True:
                    try:
                        ops.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                work = [op for op in ops if op != _STOP]
                try:
                    self._apply(db, work)
                except sqlite3.Error as exc:
                    log.exception("journal_write_failed", error=str(exc), operations=len(work))
                    # Not on disk: the next put of these objects must write them, changed or not.
                    for op in work:
                        if op[0] == "put":
                            self._bodies.pop((op[1], op[2]), None)
                with self._written:
                    self._pending -= len(work)
                    self._written.notify_all()
                if len(work) != len(ops):
                    return
        finally:
            db.close()

    @staticmethod
    def _apply(db: sqlite3.Connection, ops: list[_Op]) -> None:
        with db:
            for op in ops:
                if op[0] == "put":
                    _, kind, key, seq, body = op
                    # A changed object keeps its first position; only its body is new.
                    db.execute(
                        "INSERT INTO objects (kind, key, seq, body) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body",
                        (kind, key, seq, body),
                    )
                elif op[0] == "delete":
                    db.execute("DELETE FROM objects WHERE kind = ? AND key = ?", (op[1], op[2]))
                elif op[0] == "clear":
                    if op[1] is None:
                        db.execute("DELETE FROM objects")
                    else:
                        db.execute("DELETE FROM objects WHERE kind = ?", (op[1],))


_SQLITE_HEADER = b"SQLite format 3\x00"


def _take_legacy(path: Path) -> dict[str, Any] | None:
    """An older stand-in's JSON state at ``path`` (or ``state.json`` beside it), moved aside."""
    for candidate in dict.fromkeys((path, path.with_name("state.json"))):
        try:
            with candidate.open("rb") as file:
                if file.read(16) == _SQLITE_HEADER:
                    return None
            raw = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(raw, dict):
            continue
        candidate.replace(candidate.with_name(candidate.name + ".imported"))
        log.info("journal_imported_json_state", path=str(candidate))
        return raw
    return None
