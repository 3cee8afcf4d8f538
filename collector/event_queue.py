"""Alarm/output events, as durable as readings and bounded: two tables in the buffer file.

An event used to wait in memory until paho queued it: lost to a kill -9, growing without bound during
an outage, and an alarm that cleared while the collector was down never gave its `cleared`. Now the
buffer derives each reading's events (`collector.alarms.status_changes`) in the reading's own
transaction, against the last states of its meter kept in `event_states`: a committed reading and its
events exist together or not at all, and the first reading after a restart is compared with the last
one before it. The MQTT sink publishes them ahead of the data backlog and deletes one only when its
PUBACK arrived; after a restart every unacknowledged event is handed out again, in order.

The queue holds at most `max_events` (default 10,000, a few MB): beyond it the oldest are dropped,
counted (`dropped`, persisted) and logged, like readings when the buffer is full. The alarm states
themselves stay in every buffered reading.

The buffer calls this module under its lock and inside its transactions; it holds no lock of its own.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from collector.alarms import status_changes
from collector.reading import Reading

log = logging.getLogger(__name__)

MAX_EVENTS = 10_000
DROPPED_COUNTER = "events_dropped"  # a row of the buffer's `counters` table

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the sink's position compares ids
    asset TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    payload BLOB NOT NULL                  -- the EVENT message as it is published
);
CREATE TABLE IF NOT EXISTS event_states (asset TEXT PRIMARY KEY, states TEXT NOT NULL);  -- JSON
"""
_IDS = "SELECT value FROM json_each(?)"

# (reading, metric, active) -> the bytes to publish (collector.payload.status_event, encoded)
EventEncoder = Callable[[Reading, str, bool], bytes]
States = dict[str, bool]


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    asset: str
    timestamp_ms: int
    payload: bytes


@dataclass(frozen=True)
class Staged:
    """What a transaction wrote; applied to the in-memory view only once it committed."""

    states: dict[str, States]
    depth: int
    dropped: int


class EventQueue:
    def __init__(self, db: sqlite3.Connection, encoder: EventEncoder, max_events: int = MAX_EVENTS) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        self._encode = encoder
        self._max = max_events
        db.executescript(SCHEMA)
        rows = db.execute("SELECT asset, states FROM event_states").fetchall()
        self._states: dict[str, States] = {asset: json.loads(states) for asset, states in rows}
        self._depth = int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        row = db.execute("SELECT value FROM counters WHERE name = ?", (DROPPED_COUNTER,)).fetchone()
        self._dropped = int(row[0]) if row else 0

    def record(self, db: sqlite3.Connection, readings: Iterable[Reading]) -> Staged:
        """Inside the caller's transaction: write the events of `readings` and their meters' new states."""
        states: dict[str, States] = {}
        rows = []
        for reading in readings:
            previous = states.get(reading.asset, self._states.get(reading.asset))
            after, changes = status_changes(previous, reading)
            if after != previous:
                states[reading.asset] = after
            rows += [(reading.asset, reading.timestamp_ms, self._encode(reading, m, a)) for m, a in changes]
        db.executemany("INSERT INTO events (asset, timestamp_ms, payload) VALUES (?, ?, ?)", rows)
        db.executemany(
            "INSERT INTO event_states (asset, states) VALUES (?, ?)"
            " ON CONFLICT(asset) DO UPDATE SET states = excluded.states",
            [(asset, json.dumps(s, sort_keys=True)) for asset, s in states.items()],
        )
        depth, dropped = self._depth + len(rows), self._dropped
        if depth > self._max:
            excess = depth - self._max
            oldest = "SELECT id FROM events ORDER BY id LIMIT ?"
            db.execute(f"DELETE FROM events WHERE id IN ({oldest})", (excess,))  # noqa: S608
            depth, dropped = self._max, dropped + excess
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (DROPPED_COUNTER, dropped),
            )
            log.warning(
                "event queue full: dropped the oldest events",
                extra={"dropped": excess, "dropped_total": dropped, "max_events": self._max},
            )
        return Staged(states, depth, dropped)

    def commit(self, staged: Staged) -> None:
        self._states.update(staged.states)
        self._depth, self._dropped = staged.depth, staged.dropped

    def fetch(self, db: sqlite3.Connection, after_id: int, limit: int) -> list[Event]:
        rows = db.execute(
            "SELECT id, asset, timestamp_ms, payload FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [Event(*row) for row in rows]

    def ack(self, db: sqlite3.Connection, ids: Sequence[int]) -> int:
        """Inside the caller's transaction: the broker has these events. Returns how many were deleted,
        for `acked` once the transaction committed."""
        id_list = f"[{','.join(map(str, ids))}]"  # ints from our own SELECT
        return len(db.execute(f"DELETE FROM events WHERE id IN ({_IDS}) RETURNING id", (id_list,)).fetchall())  # noqa: S608

    def acked(self, count: int) -> None:
        self._depth -= count

    def stats(self) -> dict[str, int]:
        return {"depth": self._depth, "dropped": self._dropped, "max": self._max}
