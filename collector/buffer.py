"""Durable store-and-forward buffer: every reading is committed here before any sink sees it.

One SQLite file in WAL mode. Each row is one reading, stored as what the sinks will send: the DDATA
payload (with the per-asset `seq` given at append time) and the InfluxDB line protocol, each
zlib-compressed. Encoding once at append time (on the poller threads, ~100 readings/s) means a backlog
drain only reads rows and hands bytes to the network: no JSON work per replayed message. The `seqs`
table persists the last `seq` per asset in the same transaction, so `seq` keeps counting across restarts.
`seq` only counts within one file, so each file gets an identity when it is created (`buffer_id`, a
random UUID in the `identity` table) that every payload carries: a lost or replaced file (new disk,
fresh volume) restarts `seq` at 1 under a new `buffer_id`, never under the old one.

Each sink (MQTT, InfluxDB) has its own cursor: a read position kept in memory plus a durable
`pending_<sink>` table listing the rows it still owes its peer. A sink removes a row from its table
only when the peer acknowledged it (PUBACK, HTTP 204); the reading is deleted, in the same transaction,
once no sink needs it. Acks touch only those small tables, never the (kilobyte) reading rows. After a
restart every cursor starts again at the oldest row it has not acknowledged, so nothing committed is
lost and order per asset is kept (duplicates are possible downstream, gaps are not).

With an `event_encoder`, the buffer also keeps the alarm/output events of the readings, derived in the
same transaction (`collector.event_queue`: durable, bounded, acknowledged by the MQTT sink).

The buffer is bounded in bytes: when an append would exceed `max_bytes`, the oldest rows are dropped,
counted and logged, whatever sinks still wanted them (an outage longer than the buffer can hold must not
stop the collector from taking new readings).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from collector.event_queue import MAX_EVENTS, Event, EventEncoder, EventQueue, Staged
from collector.lineprotocol import lines
from collector.payload import ddata, encode
from collector.reading import Reading

log = logging.getLogger(__name__)

SINKS = ("mqtt", "influx")
# Bumped whenever the row format changes: a file from another format is refused, never misread.
SCHEMA_VERSION = 2
# SQLite's own cost per row (record header, rowid, pending entries); counted so that max_bytes bounds
# the file size rather than just the compressed payloads.
ROW_OVERHEAD_BYTES = 64
# WAL pages are copied back into the database by a checkpointer thread on its own connection, never by
# a commit holding the buffer lock: a checkpoint writes and fsyncs megabytes, which would stall appends.
_CHECKPOINT_INTERVAL_S = 1.0
# zlib level 1: ~3.3 KB of DDATA JSON + ~1 KB of line protocol shrink to ~1.4 KB per reading.
_COMPRESSION_LEVEL = 1


def _done(sinks: Iterable[str]) -> str:
    """SQL condition: no sink in `sinks` still needs the `readings` row."""
    return " AND ".join(
        f"NOT EXISTS (SELECT 1 FROM pending_{s} p WHERE p.id = readings.id)"  # noqa: S608
        for s in sinks
    )


# Per-sink SQL, built once from the fixed SINKS tuple (no caller-supplied text reaches a query). Ack
# batches travel as one JSON array parameter: one statement per batch, not one per row.
_IDS = "SELECT value FROM json_each(?)"
_SQL = {
    s: {
        "queue": f"INSERT INTO pending_{s} (id) VALUES (?)",  # noqa: S608
        "release": f"DELETE FROM pending_{s}",  # noqa: S608
        "fetch": f"SELECT r.id, r.asset, r.seq, r.timestamp_ms, r.{s} FROM pending_{s} p"  # noqa: S608
        " JOIN readings r ON r.id = p.id WHERE p.id > ? ORDER BY p.id LIMIT ?",
        "ack": f"DELETE FROM pending_{s} WHERE id IN ({_IDS})",  # noqa: S608
        "delete_acked": f"DELETE FROM readings WHERE id IN ({_IDS}) AND "  # noqa: S608
        f"{_done(o for o in SINKS if o != s)} RETURNING size",
        "drop_oldest": f"DELETE FROM pending_{s} WHERE id <= ?",  # noqa: S608
        "depth": f"SELECT COUNT(*) FROM pending_{s}",  # noqa: S608
    }
    for s in SINKS
}
_DELETE_DONE = f"DELETE FROM readings WHERE {_done(SINKS)}"  # noqa: S608

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: cursors compare ids
    asset TEXT NOT NULL,
    seq INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    size INTEGER NOT NULL,                 -- bytes counted against max_bytes
    mqtt BLOB NOT NULL,                    -- zlib(DDATA JSON payload), empty when MQTT is off
    influx BLOB NOT NULL                   -- zlib(line protocol), empty when InfluxDB is off
);
{"".join(f"CREATE TABLE IF NOT EXISTS pending_{s} (id INTEGER PRIMARY KEY);" for s in SINKS)}
CREATE TABLE IF NOT EXISTS seqs (asset TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS identity (buffer_id TEXT NOT NULL);
"""


class BufferFormatError(Exception):
    """The file holds a buffer written in another row format."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One buffered reading as a sink sees it: the bytes to send, plus what to log and measure."""

    id: int
    asset: str
    seq: int
    timestamp_ms: int
    payload: bytes  # DDATA JSON for "mqtt", line protocol (one line per phase row) for "influx"


class Buffer:
    """Thread-safe: the poller appends from its threads while each sink reads and acks from its own.

    `thing` is the collector's thing name, which every DDATA payload carries (asset uuid).
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        thing: str,
        sinks: Sequence[str] = SINKS,
        synchronous: str = "NORMAL",
        ddata_encoder: Callable[[Reading, int, str], bytes] | None = None,
        event_encoder: EventEncoder | None = None,
        max_events: int = MAX_EVENTS,
    ) -> None:
        unknown = set(sinks) - set(SINKS)
        if unknown or not sinks:
            raise ValueError(f"sinks must be some of {', '.join(SINKS)}, got {', '.join(sinks) or 'none'}")
        self.path = path
        self.max_bytes = max_bytes
        self.sinks = tuple(sinks)
        self._ddata = "mqtt" in self.sinks
        # What the MQTT sink will send for a reading given its seq and this file's buffer_id
        # (collector.wire picks the encoding).
        self._ddata_encoder = ddata_encoder or (
            lambda reading, seq, buffer_id: encode(ddata(reading, thing, seq, buffer_id=buffer_id))
        )
        self._lines = "influx" in self.sinks
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._check_format()
        # WAL: a committed transaction survives kill -9 of this process. synchronous=FULL also makes it
        # survive a power cut, at the cost of one fsync per append.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.executescript(_SCHEMA)
        self._events = EventQueue(self._db, event_encoder, max_events) if event_encoder is not None else None
        self.buffer_id = self._identity()
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._release_unused_sinks()
        self._last_seq: dict[str, int] = dict(self._db.execute("SELECT asset, last_seq FROM seqs").fetchall())
        self._bytes = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM readings").fetchone()[0])
        self._dropped = self._counter("dropped")
        self._closed = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="buffer-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        """PASSIVE checkpoints: never block the writer, which keeps appending and acking meanwhile."""
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            while not self._closed.wait(_CHECKPOINT_INTERVAL_S):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:  # busy or I/O trouble: the WAL just grows until the next try
                    log.warning("buffer checkpoint failed; retrying", exc_info=True)
        finally:
            db.close()

    def _identity(self) -> str:
        """This file's `buffer_id`, made (random, so never reused) the first time the file is opened."""
        with self._transaction():
            row = self._db.execute("SELECT buffer_id FROM identity").fetchone()
            if row is None:
                row = (str(uuid.uuid4()),)
                self._db.execute("INSERT INTO identity (buffer_id) VALUES (?)", row)
        return str(row[0])

    def _check_format(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        has_rows = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'readings'").fetchone()
        if has_rows and version != SCHEMA_VERSION:
            self._db.close()
            raise BufferFormatError(
                f"{self.path} is a buffer in format {version}, this collector writes format {SCHEMA_VERSION};"
                " drain it with the collector version that wrote it, or move the file away"
            )

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
        # The line protocol does not depend on seq: encode it before taking the lock.
        batch = [(r, self._encode_lines(r)) for r in readings]
        seqs: list[int] = []
        staged: Staged | None = None
        with self._lock:
            last = dict(self._last_seq)
            rows = []
            for reading, influx in batch:
                seq = last.get(reading.asset, 0) + 1
                last[reading.asset] = seq
                seqs.append(seq)
                mqtt = self._encode_ddata(reading, seq)
                size = len(mqtt) + len(influx) + ROW_OVERHEAD_BYTES
                rows.append((reading.asset, seq, reading.timestamp_ms, size, mqtt, influx))
            incoming = sum(row[3] for row in rows)
            with self._transaction():
                self._make_room(incoming)
                for row in rows:
                    cursor = self._db.execute(
                        "INSERT INTO readings (asset, seq, timestamp_ms, size, mqtt, influx)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        row,
                    )
                    for sink in self.sinks:
                        self._db.execute(_SQL[sink]["queue"], (cursor.lastrowid,))
                self._db.executemany(
                    "INSERT INTO seqs (asset, last_seq) VALUES (?, ?)"
                    " ON CONFLICT(asset) DO UPDATE SET last_seq = excluded.last_seq",
                    [(a, last[a]) for a in {row[0] for row in rows}],
                )
                if self._events is not None:
                    staged = self._events.record(self._db, (reading for reading, _ in batch))
            if self._events is not None and staged is not None:
                self._events.commit(staged)
            self._last_seq = last
            self._bytes += incoming
        return seqs

    def _encode_ddata(self, reading: Reading, seq: int) -> bytes:
        if not self._ddata:
            return b""
        return zlib.compress(self._ddata_encoder(reading, seq, self.buffer_id), _COMPRESSION_LEVEL)

    def _encode_lines(self, reading: Reading) -> bytes:
        if not self._lines:
            return b""
        return zlib.compress("\n".join(lines(reading)).encode(), _COMPRESSION_LEVEL)

    def _make_room(self, incoming: int) -> None:
        """Drop the oldest rows until `incoming` bytes fit under max_bytes (inside the caller's txn)."""
        if self._bytes + incoming <= self.max_bytes:
            return
        need = self._bytes + incoming - self.max_bytes
        freed = dropped = 0
        last_doomed = 0
        for row_id, size in self._db.execute("SELECT id, size FROM readings ORDER BY id"):
            if freed >= need:
                break
            last_doomed = row_id
            freed += size
            dropped += 1
        self._db.execute("DELETE FROM readings WHERE id <= ?", (last_doomed,))
        for sink in SINKS:
            self._db.execute(_SQL[sink]["drop_oldest"], (last_doomed,))
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
        # Decompress outside the lock: appends from the poller threads need not wait for it.
        return [Entry(i, a, s, t, zlib.decompress(body)) for i, a, s, t, body in rows]

    def _ack(self, sink: str, ids: Sequence[int]) -> None:
        if not ids:
            return
        # Row ids are ints from our own SELECT: the JSON array is built from them alone.
        id_list = f"[{','.join(map(str, ids))}]"
        with self._lock, self._transaction():
            self._db.execute(_SQL[sink]["ack"], (id_list,))
            # Rows no other sink needs any more leave the buffer in the same transaction.
            freed = self._db.execute(_SQL[sink]["delete_acked"], (id_list,)).fetchall()
            self._bytes -= sum(size for (size,) in freed)

    def depth(self, sink: str) -> int:
        """Rows this sink has not acknowledged yet."""
        with self._lock:
            return int(self._db.execute(_SQL[sink]["depth"]).fetchone()[0])

    def next_events(self, after_id: int, limit: int) -> list[Event]:
        """Up to `limit` unacknowledged events with an id above `after_id`, oldest first."""
        if self._events is None:
            return []
        with self._lock:
            return self._events.fetch(self._db, after_id, limit)

    def ack_events(self, ids: Sequence[int]) -> None:
        """The broker acknowledged these events: they leave the queue."""
        if self._events is None or not ids:
            return
        with self._lock:
            with self._transaction():
                deleted = self._events.ack(self._db, ids)
            self._events.acked(deleted)

    def stats(self) -> dict[str, object]:
        stats: dict[str, object] = {
            "buffer_id": self.buffer_id,
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
            "dropped": self._dropped,
            "depth": {s: self.depth(s) for s in self.sinks},
        }
        if self._events is not None:
            with self._lock:
                stats["events"] = self._events.stats()
        return stats

    def close(self) -> None:
        self._closed.set()
        self._checkpointer.join()
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # leave a compact file behind
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
