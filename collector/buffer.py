"""Durable store-and-forward buffer: every reading is committed here before any sink sees it.

One SQLite file in WAL mode. Each row is one reading with the per-asset `seq` it was given at append
time (the `seqs` table persists the last one in the same transaction, so `seq` keeps counting across
restarts). Each sink (MQTT, InfluxDB) has its own cursor: a read position kept in memory plus a durable
`pending_<sink>` flag per row. A sink clears its flag only when its peer acknowledged the row (PUBACK,
HTTP 204); the row is deleted once no sink needs it. After a restart every cursor starts again at the
oldest row it has not acknowledged, so nothing committed is lost and order per asset is kept
(duplicates are possible downstream, gaps are not).

The buffer is bounded in bytes: when an append would exceed `max_bytes`, the oldest rows are dropped,
counted and logged, whatever sinks still wanted them (an outage longer than the buffer can hold must not
stop the collector from taking new readings).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from collector.reading import Reading

log = logging.getLogger(__name__)

SINKS = ("mqtt", "influx")
# SQLite's own cost per row (record header, rowid, index entry); counted so that max_bytes bounds the
# file size rather than just the JSON payloads.
ROW_OVERHEAD_BYTES = 64

# Per-sink SQL, built once from the fixed SINKS tuple (no caller-supplied text reaches a query).
_SQL = {
    s: {
        "release": f"UPDATE readings SET pending_{s} = 0 WHERE pending_{s} = 1",  # noqa: S608
        "fetch": f"SELECT id, seq, body FROM readings WHERE pending_{s} = 1 AND id > ? ORDER BY id LIMIT ?",  # noqa: S608
        "ack": f"UPDATE readings SET pending_{s} = 0 WHERE id = ?",  # noqa: S608
        "depth": f"SELECT COUNT(*) FROM readings WHERE pending_{s} = 1",  # noqa: S608
    }
    for s in SINKS
}
_DELETE_DONE = "DELETE FROM readings WHERE pending_mqtt = 0 AND pending_influx = 0"
_ACKED_SIZE = (
    "SELECT COALESCE(SUM(LENGTH(body)), 0), COUNT(*) FROM temp.acked JOIN readings USING (id)"
    " WHERE pending_mqtt = 0 AND pending_influx = 0"
)
_DELETE_ACKED = (
    "DELETE FROM readings WHERE id IN (SELECT id FROM temp.acked) AND pending_mqtt = 0 AND pending_influx = 0"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    asset TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    pending_mqtt INTEGER NOT NULL,
    pending_influx INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_pending_mqtt ON readings(id) WHERE pending_mqtt = 1;
CREATE INDEX IF NOT EXISTS readings_pending_influx ON readings(id) WHERE pending_influx = 1;
CREATE TABLE IF NOT EXISTS seqs (asset TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Entry:
    """One buffered reading as a sink sees it."""

    id: int
    seq: int
    reading: Reading


def encode_reading(reading: Reading) -> bytes:
    return json.dumps(
        [reading.site, reading.asset, reading.breaker, reading.timestamp_ms, reading.values],
        separators=(",", ":"),
    ).encode()


def decode_reading(body: bytes) -> Reading:
    site, asset, breaker, timestamp_ms, values = json.loads(body)
    return Reading(site=site, asset=asset, breaker=breaker, timestamp_ms=timestamp_ms, values=values)


class Buffer:
    """Thread-safe: the poller appends from its threads while each sink reads and acks from its own."""

    def __init__(
        self, path: Path, max_bytes: int, sinks: Sequence[str] = SINKS, synchronous: str = "NORMAL"
    ) -> None:
        unknown = set(sinks) - set(SINKS)
        if unknown:
            raise ValueError(f"unknown sink(s): {', '.join(sorted(unknown))}")
        self.path = path
        self.max_bytes = max_bytes
        self.sinks = tuple(sinks)
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # WAL: a committed transaction survives kill -9 of this process. synchronous=FULL also makes it
        # survive a power cut, at the cost of one fsync per append.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS acked (id INTEGER PRIMARY KEY)")
        self._release_unused_sinks()
        self._last_seq: dict[str, int] = dict(self._db.execute("SELECT asset, last_seq FROM seqs").fetchall())
        self._bytes = int(
            self._db.execute(
                "SELECT COALESCE(SUM(LENGTH(body)), 0) + COUNT(*) * ? FROM readings", (ROW_OVERHEAD_BYTES,)
            ).fetchone()[0]
        )
        self._dropped = self._counter("dropped")

    def _release_unused_sinks(self) -> None:
        """A sink that was configured before (e.g. InfluxDB, now disabled) must not pin rows forever."""
        unused = [s for s in SINKS if s not in self.sinks]
        if not unused:
            return
        with self._transaction():
            for sink in unused:
                self._db.execute(_SQL[sink]["release"])
            self._db.execute(_DELETE_DONE)

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def append(self, reading: Reading) -> int:
        """Commit `reading` with the next `seq` of its asset and return that seq."""
        return self.append_many([reading])[0]

    def append_many(self, readings: Iterable[Reading]) -> list[int]:
        """Commit several readings in one transaction (one fsync); returns their seqs in order."""
        flags = tuple(1 if s in self.sinks else 0 for s in SINKS)
        seqs: list[int] = []
        with self._lock:
            rows = [(r, encode_reading(r)) for r in readings]
            incoming = sum(len(body) + ROW_OVERHEAD_BYTES for _, body in rows)
            last = dict(self._last_seq)
            with self._transaction():
                self._make_room(incoming)
                for reading, body in rows:
                    seq = last.get(reading.asset, 0) + 1
                    last[reading.asset] = seq
                    seqs.append(seq)
                    self._db.execute(
                        "INSERT INTO readings (asset, seq, body, pending_mqtt, pending_influx)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (reading.asset, seq, body, *flags),
                    )
                self._db.executemany(
                    "INSERT INTO seqs (asset, last_seq) VALUES (?, ?)"
                    " ON CONFLICT(asset) DO UPDATE SET last_seq = excluded.last_seq",
                    [(a, last[a]) for a in {r.asset for r, _ in rows}],
                )
            self._last_seq = last
            self._bytes += incoming
        return seqs

    def _make_room(self, incoming: int) -> None:
        """Drop the oldest rows until `incoming` bytes fit under max_bytes (inside the caller's txn)."""
        if self._bytes + incoming <= self.max_bytes:
            return
        need = self._bytes + incoming - self.max_bytes
        freed = dropped = 0
        doomed: list[int] = []
        for row_id, size in self._db.execute("SELECT id, LENGTH(body) FROM readings ORDER BY id"):
            if freed >= need:
                break
            doomed.append(row_id)
            freed += size + ROW_OVERHEAD_BYTES
            dropped += 1
        self._db.executemany("DELETE FROM readings WHERE id = ?", [(i,) for i in doomed])
        self._dropped += dropped
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES ('dropped', ?)"
            " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (self._dropped,),
        )
        self._bytes -= freed
        log.warning(
            "buffer full: dropped oldest readings",
            extra={"dropped": dropped, "dropped_total": self._dropped, "max_bytes": self.max_bytes},
        )

    def cursor(self, sink: str) -> Cursor:
        if sink not in self.sinks:
            raise ValueError(f"sink {sink!r} is not enabled on this buffer")
        return Cursor(self, sink)

    def last_seq(self, asset: str) -> int:
        """The last seq given to `asset` (0 if none yet)."""
        with self._lock:
            return self._last_seq.get(asset, 0)

    def _fetch(self, sink: str, after_id: int, limit: int) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(_SQL[sink]["fetch"], (after_id, limit)).fetchall()
        return [Entry(id=i, seq=s, reading=decode_reading(b)) for i, s, b in rows]

    def _ack(self, sink: str, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._lock, self._transaction():
            params = [(i,) for i in ids]
            self._db.executemany(_SQL[sink]["ack"], params)
            # Rows no sink needs any more leave the buffer in the same transaction.
            self._db.execute("DELETE FROM temp.acked")
            self._db.executemany("INSERT OR IGNORE INTO temp.acked (id) VALUES (?)", params)
            size, count = self._db.execute(_ACKED_SIZE).fetchone()
            self._db.execute(_DELETE_ACKED)
            self._bytes -= int(size) + int(count) * ROW_OVERHEAD_BYTES

    def depth(self, sink: str) -> int:
        """Rows this sink has not acknowledged yet."""
        with self._lock:
            return int(
                self._db.execute(_SQL[sink]["depth"]).fetchone()[0]
            )

    def stats(self) -> dict[str, object]:
        return {
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
            "dropped": self._dropped,
            "depth": {s: self.depth(s) for s in self.sinks},
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Cursor:
    """One sink's view of the buffer: read forward in batches, acknowledge what its peer confirmed.

    Only the owning sink thread uses a cursor; acks may come back out of order (MQTT in-flight window).
    """

    def __init__(self, buffer: Buffer, sink: str) -> None:
        self._buffer = buffer
        self.sink = sink
        self._position = 0  # highest row id handed out

    def next_batch(self, limit: int) -> list[Entry]:
        entries = self._buffer._fetch(self.sink, self._position, limit)
        if entries:
            self._position = entries[-1].id
        return entries

    def ack(self, ids: Sequence[int]) -> None:
        self._buffer._ack(self.sink, ids)

    def rewind(self, after_id: int = 0) -> None:
        """Hand out again every unacknowledged row with an id above `after_id` (after a failed write)."""
        self._position = min(self._position, after_id)

    def depth(self) -> int:
        return self._buffer.depth(self.sink)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (the connection runs in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
