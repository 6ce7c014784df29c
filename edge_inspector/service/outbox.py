"""Disk-backed outbox (SQLite): every message to the broker is written here first and removed only
when the broker acknowledges it (PUBACK), so no verdict is lost while the broker is down or across
a restart of the service. The verdict sequence counter lives in the same database and is advanced
in the same transaction that stores the verdict, so a sequence number is never skipped.

Identity: a random epoch id is stored beside the counter when the database is created;
`station` + `epoch` + `seq` is a verdict's unique key. A database that cannot be opened or fails
SQLite's quick check is moved aside (one log line) and a new one begins with a new epoch, so
numbering restarting at 1 never collides with what subscribers already hold.

Triggers: an accepted software trigger is a row here, written before the reply says ok, and
deleted in the same transaction as the verdict that answers it (the oldest open trigger with
that part id: cameras deliver triggered images in trigger order). Rows left after a crash, a
SIGTERM or a lost camera are answered with ERROR verdicts, so each accepted trigger ends in exactly
one verdict.

Bound (max_bytes of payload): when a new message would pass it, mask images are dropped first,
oldest first; verdicts are dropped (oldest first, counted and logged) only when nothing but
verdicts is left. Masks can be recomputed from the archive; a verdict cannot.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_inspector.errors import UserError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
    kind TEXT NOT NULL, seq INTEGER
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS triggers (id INTEGER PRIMARY KEY AUTOINCREMENT, part_id TEXT, accepted_at REAL NOT NULL);
"""


@dataclass
class Message:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: str  # "verdict" or "mask"
    seq: int | None


class Outbox:
    def __init__(self, path: Path, max_bytes: int = 256 << 20):
        path = Path(path)
        if path.parent.exists() and not path.parent.is_dir():
            raise UserError(f"service.state_dir {path.parent}: is a file, expected a folder")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"service.state_dir {path.parent}: cannot create it ({exc.strerror})") from None
        self.path, self.max_bytes = path, max_bytes
        try:
            self.db = self._open()
        except sqlite3.DatabaseError as exc:
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            log.error("outbox %s unreadable (%s): moved aside to %s; a new epoch begins", path, exc, aside.name)
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(path) + suffix)
                if src.exists():
                    src.replace(Path(str(aside) + suffix))
            self.db = self._open()
        self.epoch = self._epoch()
        self.lock = threading.Lock()
        self.dropped = {"verdict": 0, "mask": 0}
        self._bytes = self.db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()[0]

    def _open(self) -> sqlite3.Connection:
        # one connection shared by the pipeline and the MQTT threads, serialised by a lock
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a verdict on disk survives a power cut
            db.executescript(SCHEMA)
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick check: {check}")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _epoch(self) -> str:
        row = self.db.execute("SELECT value FROM meta WHERE name = 'epoch'").fetchone()
        if row:
            return row[0]
        epoch = secrets.token_hex(4)
        self.db.execute("INSERT INTO meta VALUES ('epoch', ?)", (epoch,))
        return epoch

    def last_seq(self) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
        return row[0] if row else 0

    def accept_trigger(self, part_id: str | None, limit: int) -> int | None:
        """Record an accepted trigger (durably) and return its id; None when limit are open."""
        with self.lock:
            if self.db.execute("SELECT COUNT(*) FROM triggers").fetchone()[0] >= limit:
                return None
            return self.db.execute("INSERT INTO triggers (part_id, accepted_at) VALUES (?, ?)",
                                   (part_id, time.time())).lastrowid

    def withdraw_trigger(self, trigger_id: int) -> None:
        """A trigger the camera refused: it was never accepted, no verdict will answer it."""
        with self.lock:
            self.db.execute("DELETE FROM triggers WHERE id = ?", (trigger_id,))

    def open_triggers(self) -> list[tuple[int, str | None, float]]:
        with self.lock:
            return self.db.execute("SELECT id, part_id, accepted_at FROM triggers ORDER BY id").fetchall()

    def add_verdict(self, make: Callable[[int], list[tuple[str, bytes, int, bool, str]]],
                    answers_trigger: bool = False, part_id: str | None = None) -> int:
        """Allocate the next sequence number and store the messages make(seq) returns, atomically;
        answers_trigger: the same transaction closes the oldest open trigger of part_id.

        make(seq) -> [(topic, payload, qos, retain, kind)]. Returns seq.
        """
        with self.lock:
            seq = self.last_seq() + 1
            messages = make(seq)
            size = sum(len(m[1]) for m in messages)
            self._make_room(size)
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute("INSERT INTO counters VALUES ('seq', ?) ON CONFLICT(name) DO UPDATE SET value = ?",
                                (seq, seq))
                self.db.executemany("INSERT INTO messages (topic, payload, qos, retain, kind, seq) VALUES (?,?,?,?,?,?)",
                                    [(t, p, q, int(r), k, seq) for t, p, q, r, k in messages])
                if answers_trigger:
                    self.db.execute("DELETE FROM triggers WHERE id = (SELECT id FROM triggers WHERE part_id IS ? "
                                    "ORDER BY id LIMIT 1)", (part_id,))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self._bytes += size
            return seq

    def _make_room(self, size: int) -> None:
        for kind in ("mask", "verdict"):
            while self._bytes + size > self.max_bytes:
                row = self.db.execute("SELECT id, LENGTH(payload) FROM messages WHERE kind = ? ORDER BY id LIMIT 1",
                                      (kind,)).fetchone()
                if row is None:
                    break
                self.db.execute("DELETE FROM messages WHERE id = ?", (row[0],))
                self._bytes -= row[1]
                self.dropped[kind] += 1
                if kind == "verdict":
                    log.error("outbox full (%d MB): oldest unacknowledged verdict dropped", self.max_bytes >> 20)

    def pending(self, after_id: int = 0, limit: int = 100) -> list[Message]:
        """Unacknowledged messages in the order they were produced."""
        with self.lock:
            rows = self.db.execute("SELECT id, topic, payload, qos, retain, kind, seq FROM messages WHERE id > ? "
                                   "ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        return [Message(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5], r[6]) for r in rows]

    def get(self, message_id: int) -> Message | None:
        with self.lock:
            r = self.db.execute("SELECT id, topic, payload, qos, retain, kind, seq FROM messages WHERE id = ?",
                                (message_id,)).fetchone()
        return Message(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5], r[6]) if r else None

    def ack(self, message_id: int) -> None:
        with self.lock:
            row = self.db.execute("SELECT LENGTH(payload) FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row:
                self.db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
                self._bytes -= row[0]

    def depth(self) -> int:
        with self.lock:
            return self.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    def close(self) -> None:
        with self.lock:
            self.db.close()
