"""The store-and-forward buffer: seq assignment, per-sink cursors, acks, bound, kill -9 durability."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import collector.buffer as buffer_module
from collector.buffer import Buffer, BufferFormatError
from collector.lineprotocol import lines
from collector.metrics import METRICS
from collector.payload import ddata, encode
from collector.reading import Reading

THING = "test:plant-a:edge-01"


def reading(asset: str = "m1", ts: int = 1_700_000_000_000, value: float = 230.0) -> Reading:
    return Reading(site="plant-a", asset=asset, breaker="F1", timestamp_ms=ts, values={"voltageAN": value})


def full_reading(i: int, asset: str = "m1") -> Reading:
    """Every metric, with float32-like values as the poller produces them."""
    values = {m.name: 100.0 + j + i / 7 for j, m in enumerate(METRICS)}
    return Reading("plant-a", asset, "F1", 1_700_000_000_000 + i, values)


def test_seq_counts_per_asset_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = Buffer(path, 10 * 1024 * 1024, THING)
    assert [buf.append(reading("m1")) for _ in range(3)] == [1, 2, 3]
    assert buf.append(reading("m2")) == 1
    buf.close()
    buf = Buffer(path, 10 * 1024 * 1024, THING)
    assert buf.append(reading("m1")) == 4
    assert buf.append_many([reading("m2"), reading("m2")]) == [2, 3]


def test_row_leaves_only_after_every_sink_acked(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite", 10 * 1024 * 1024, THING)
    buf.append_many([reading(ts=i) for i in range(5)])
    mqtt, influx = buf.cursor("mqtt"), buf.cursor("influx")
    batch = mqtt.next_batch(10)
    assert [e.seq for e in batch] == [1, 2, 3, 4, 5]
    assert [e.timestamp_ms for e in batch] == [0, 1, 2, 3, 4]
    mqtt.ack([batch[0].id, batch[2].id])  # out of order acks are fine
    assert buf.depth("mqtt") == 3 and buf.depth("influx") == 5
    influx_batch = influx.next_batch(2)
    influx.ack([e.id for e in influx_batch])
    # Row 1 acked by both sinks: gone. Row 3 still wanted by influx, row 2 by mqtt.
    assert buf.depth("influx") == 3
    mqtt.rewind()
    assert [e.seq for e in mqtt.next_batch(10)] == [2, 4, 5]
    assert buf.stats()["depth"] == {"mqtt": 3, "influx": 3}


def test_unacked_rows_replay_in_order_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = Buffer(path, 10 * 1024 * 1024, THING)
    buf.append_many([reading("m1"), reading("m2"), reading("m1"), reading("m2")])
    cur = buf.cursor("mqtt")
    cur.ack([cur.next_batch(1)[0].id])
    buf.close()
    replay = Buffer(path, 10 * 1024 * 1024, THING).cursor("mqtt").next_batch(100)
    assert [(e.asset, e.seq) for e in replay] == [("m2", 1), ("m1", 2), ("m2", 2)]


def test_entries_carry_the_payloads_each_sink_sends(tmp_path: Path) -> None:
    """Encoded once at append time: DDATA with the assigned seq for MQTT, the line protocol for InfluxDB."""
    buf = Buffer(tmp_path / "b.sqlite", 10 * 1024 * 1024, THING)
    first, second = full_reading(1, "m1"), full_reading(2, "m2")
    buf.append_many([first, second, full_reading(3, "m1")])
    mqtt = buf.cursor("mqtt").next_batch(10)
    assert [(e.asset, e.seq) for e in mqtt] == [("m1", 1), ("m2", 1), ("m1", 2)]
    assert mqtt[0].payload == encode(ddata(first, THING, 1, buffer_id=buf.buffer_id))
    assert mqtt[1].payload == encode(ddata(second, THING, 1, buffer_id=buf.buffer_id))
    assert mqtt[1].timestamp_ms == second.timestamp_ms
    influx = buf.cursor("influx").next_batch(10)
    assert influx[0].payload.decode().splitlines() == lines(first)
    assert [e.id for e in influx] == [e.id for e in mqtt]


def test_acks_in_one_batch_free_the_bytes_of_rows_no_sink_needs(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite", 10 * 1024 * 1024, THING)
    buf.append_many(full_reading(i) for i in range(300))
    full = int(buf.stats()["bytes"])  # type: ignore[call-overload]
    mqtt, influx = buf.cursor("mqtt"), buf.cursor("influx")
    mqtt.ack([e.id for e in mqtt.next_batch(300)])
    assert buf.stats()["bytes"] == full  # InfluxDB still needs every row
    influx.ack([e.id for e in reversed(influx.next_batch(100))])
    assert 0 < int(buf.stats()["bytes"]) < full  # type: ignore[call-overload]
    influx.ack([e.id for e in influx.next_batch(300)])
    assert buf.stats()["bytes"] == 0 and buf.stats()["depth"] == {"mqtt": 0, "influx": 0}
    buf.close()
    assert Buffer(tmp_path / "b.sqlite", 10 * 1024 * 1024, THING).stats()["bytes"] == 0


def test_buffer_in_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    Buffer(path, 10 * 1024 * 1024, THING).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 1")
    with pytest.raises(BufferFormatError, match="format 1"):
        Buffer(path, 10 * 1024 * 1024, THING)


def test_full_buffer_drops_oldest_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    max_bytes = 64 * 1024
    buf = Buffer(path, max_bytes, THING)
    for i in range(400):  # ~1.4 KB per row: about 45 fit
        buf.append(full_reading(i))
    stats = buf.stats()
    assert 0 < int(stats["dropped"]) < 400  # type: ignore[call-overload]
    assert int(stats["bytes"]) <= max_bytes  # type: ignore[call-overload]
    entries = buf.cursor("mqtt").next_batch(1000)
    # The newest readings are kept, contiguous, oldest dropped first.
    assert entries[-1].seq == 400
    assert [e.seq for e in entries] == list(range(entries[0].seq, 401))
    assert entries[0].seq == int(stats["dropped"]) + 1  # type: ignore[call-overload]
    buf.close()
    assert Buffer(path, max_bytes, THING).stats()["dropped"] == stats["dropped"]


def test_disabled_sink_does_not_pin_rows(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    Buffer(path, 10 * 1024 * 1024, THING).append_many([reading(), reading()])
    buf = Buffer(path, 10 * 1024 * 1024, THING, sinks=("mqtt",))  # InfluxDB switched off since
    cur = buf.cursor("mqtt")
    cur.ack([e.id for e in cur.next_batch(10)])
    assert buf.stats()["bytes"] == 0
    with pytest.raises(ValueError, match="influx"):
        buf.cursor("influx")


def test_kill_9_loses_nothing_committed(tmp_path: Path) -> None:
    """A writer prints each seq after its commit returned; after SIGKILL every printed seq is there."""
    path = tmp_path / "b.sqlite"
    script = textwrap.dedent(
        f"""
        import sys
        from collector.buffer import Buffer
        from collector.reading import Reading
        from pathlib import Path
        buf = Buffer(Path({str(path)!r}), 64 * 1024 * 1024, "t")
        while True:
            seq = buf.append(Reading("plant-a", "m1", "F1", 0, {{"voltageAN": 1.0}}))
            print(seq, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    printed = [int(proc.stdout.readline()) for _ in range(300)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    printed += [int(line) for line in proc.stdout.read().split()]
    stored = [e.seq for e in Buffer(path, 64 * 1024 * 1024, THING).cursor("mqtt").next_batch(1_000_000)]
    assert set(printed) <= set(stored)
    assert stored == list(range(1, len(stored) + 1))


def test_consecutive_batches_do_not_overlap(tmp_path: Path) -> None:
    """The cursor advances: a sink never re-reads a row it was handed (until it rewinds)."""
    buf = Buffer(tmp_path / "b.sqlite", 10 * 1024 * 1024, THING)
    buf.append_many([reading(ts=i) for i in range(5)])
    cur = buf.cursor("influx")
    assert [e.seq for e in cur.next_batch(2)] == [1, 2]
    assert [e.seq for e in cur.next_batch(2)] == [3, 4]
    assert [e.seq for e in cur.next_batch(2)] == [5]
    assert cur.next_batch(2) == []
    buf.append(reading(ts=5))
    assert [e.seq for e in cur.next_batch(2)] == [6]  # new rows after an empty batch
    assert cur.depth() == 6  # nothing acked: handed out is not delivered
    cur.rewind(3)
    assert [e.seq for e in cur.next_batch(10)] == [4, 5, 6]
    buf.close()


def test_overflow_keeps_the_newest_rows_up_to_the_bound(tmp_path: Path) -> None:
    """Only as many of the oldest rows as needed are dropped: the buffer stays full, not emptied."""
    max_bytes = 64 * 1024
    buf = Buffer(tmp_path / "b.sqlite", max_bytes, THING)
    buf.append(full_reading(0))
    row = int(buf.stats()["bytes"])  # type: ignore[call-overload]
    assert 500 < row < 2000  # about 1 KB per reading with every metric (see buffer docstring)
    for i in range(1, 200):
        buf.append(full_reading(i))
    stats = buf.stats()
    kept = buf.cursor("mqtt").next_batch(1000)
    assert int(stats["bytes"]) <= max_bytes < int(stats["bytes"]) + 2 * row  # type: ignore[call-overload]
    assert [e.seq for e in kept] == list(range(201 - len(kept), 201))
    assert stats["dropped"] == 200 - len(kept)
    assert stats["depth"] == {"mqtt": len(kept), "influx": len(kept)}
    buf.close()


def test_row_bigger_than_the_bound_empties_the_buffer_and_is_kept(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite", 400, THING)  # smaller than one full reading
    buf.append_many([full_reading(0), full_reading(1)])
    assert [e.seq for e in buf.cursor("mqtt").next_batch(10)] == [1, 2]
    buf.append(full_reading(2))
    assert [e.seq for e in buf.cursor("mqtt").next_batch(10)] == [3]
    assert buf.stats()["dropped"] == 2
    buf.close()


@pytest.mark.parametrize(("setting", "expected"), [("FULL", 2), ("NORMAL", 1), ("anything else", 1)])
def test_synchronous_setting(tmp_path: Path, setting: str, expected: int) -> None:
    """FULL: one fsync per commit (survives a power cut); NORMAL otherwise. SQLite codes: 2 and 1."""
    buf = Buffer(tmp_path / "b.sqlite", 1024 * 1024, THING, synchronous=setting)
    assert buf._db.execute("PRAGMA synchronous").fetchone()[0] == expected
    assert buf._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    buf.close()
    with sqlite3.connect(tmp_path / "b.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2


@pytest.mark.parametrize("sinks", [(), ("mqtt", "kafka")])
def test_unknown_or_no_sinks_are_refused(tmp_path: Path, sinks: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="sinks must be some of mqtt, influx"):
        Buffer(tmp_path / "b.sqlite", 1024, THING, sinks=sinks)


def test_only_the_enabled_sinks_get_payloads(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite", 1024 * 1024, THING, sinks=("influx",))
    assert buf.append(full_reading(1)) == 1
    (entry,) = buf.cursor("influx").next_batch(10)
    assert entry.payload.decode().splitlines() == lines(full_reading(1))
    assert buf.stats()["depth"] == {"influx": 1}
    assert buf.last_seq("m1") == 1 and buf.last_seq("m9") == 0
    with pytest.raises(ValueError, match="sink 'mqtt' is not enabled"):
        buf.cursor("mqtt")
    buf.close()


def test_bytes_count_both_compressed_payloads_plus_the_row_overhead(tmp_path: Path) -> None:
    """max_bytes bounds the file: each row counts its zlib payloads and 64 bytes of SQLite overhead."""
    path = tmp_path / "b.sqlite"
    buf = Buffer(path, 1024 * 1024, THING)
    buf.append(full_reading(1))
    (mqtt,) = buf.cursor("mqtt").next_batch(10)
    (influx,) = buf.cursor("influx").next_batch(10)
    with sqlite3.connect(path) as db:
        stored = db.execute("SELECT length(mqtt), length(influx), size FROM readings").fetchall()
    assert len(stored) == 1
    mqtt_bytes, influx_bytes, size = stored[0]
    assert zlib.decompress(db_blob(path, "mqtt")) == mqtt.payload  # stored compressed, handed out plain
    assert mqtt_bytes < len(mqtt.payload) and influx_bytes < len(influx.payload)
    assert size == mqtt_bytes + influx_bytes + 64
    assert buf.stats() == {"buffer_id": buf.buffer_id, "bytes": size, "max_bytes": 1024 * 1024, "dropped": 0,
                           "depth": {"mqtt": 1, "influx": 1}}
    buf.close()
    assert Buffer(path, 1024 * 1024, THING).stats()["bytes"] == size  # recounted on open


def db_blob(path: Path, column: str) -> bytes:
    with sqlite3.connect(path) as db:
        return bytes(db.execute(f"SELECT {column} FROM readings").fetchone()[0])  # noqa: S608


def test_close_checkpoints_the_wal_into_the_database(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = Buffer(path, 1024 * 1024, THING)
    buf.append_many(full_reading(i) for i in range(50))
    reader = sqlite3.connect(path)  # another connection open: SQLite alone would leave the WAL behind
    try:
        assert reader.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 50
        buf.close()
        assert path.with_name("b.sqlite-wal").stat().st_size == 0
    finally:
        reader.close()
    with pytest.raises(sqlite3.ProgrammingError):
        buf.depth("mqtt")  # closed means closed


@pytest.mark.parametrize(("sinks", "empty"), [(("mqtt",), "influx"), (("influx",), "mqtt")])
def test_a_disabled_sink_costs_no_encoding(tmp_path: Path, sinks: tuple[str, ...], empty: str) -> None:
    path = tmp_path / "b.sqlite"
    buf = Buffer(path, 1024 * 1024, THING, sinks=sinks)
    buf.append(full_reading(1))
    buf.close()
    assert db_blob(path, empty) == b""
    assert len(db_blob(path, sinks[0])) > 100


def test_appends_from_other_threads_and_a_new_folder(tmp_path: Path) -> None:
    """Poller threads append while sink threads read: one connection shared across threads."""
    buf = Buffer(tmp_path / "new" / "folder" / "b.sqlite", 1024 * 1024, THING)
    with ThreadPoolExecutor(max_workers=2) as pool:
        seqs = [f.result() for f in [pool.submit(buf.append, reading(f"m{i % 2}")) for i in range(6)]]
    assert sorted(seqs) == [1, 1, 2, 2, 3, 3]
    assert len(buf.cursor("mqtt").next_batch(10)) == 6
    buf.close()


def test_rewind_by_default_hands_out_every_unacked_row_again(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite", 1024 * 1024, THING)
    buf.append_many([reading(ts=i) for i in range(3)])
    cur = buf.cursor("mqtt")
    assert [e.seq for e in cur.next_batch(10)] == [1, 2, 3]
    cur.rewind()
    assert [e.seq for e in cur.next_batch(10)] == [1, 2, 3]
    cur.rewind(5)  # never forward: rows not yet handed out are not skipped
    assert cur.next_batch(10) == []
    buf.close()


def _row_sizes(path: Path) -> list[int]:
    with sqlite3.connect(path) as db:
        return [size for (size,) in db.execute("SELECT size FROM readings ORDER BY id")]


def test_overflow_boundaries_drop_exactly_what_is_needed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows of equal size s, max_bytes = 3 s: three rows fit exactly; a fourth drops exactly one.

    InfluxDB only: the line protocol of equal readings is equal (DDATA would differ by seq)."""
    probe = Buffer(tmp_path / "probe.sqlite", 1024 * 1024, THING, sinks=("influx",))
    probe.append_many([reading(ts=1)] * 2)
    probe.close()
    sizes = _row_sizes(tmp_path / "probe.sqlite")
    assert sizes[0] == sizes[1]
    size = sizes[0]
    buf = Buffer(tmp_path / "b.sqlite", 3 * size, THING, sinks=("influx",))
    with caplog.at_level(logging.WARNING, logger="collector.buffer"):
        buf.append_many([reading(ts=1)] * 3)
        assert buf.stats()["dropped"] == 0 and buf.stats()["bytes"] == 3 * size  # exactly full
        buf.append(reading(ts=1))
    assert [e.seq for e in buf.cursor("influx").next_batch(10)] == [2, 3, 4]
    assert buf.stats()["dropped"] == 1 and buf.stats()["bytes"] == 3 * size
    (record,) = [r for r in caplog.records if r.name == "collector.buffer"]
    assert record.getMessage() == "buffer full: dropped oldest readings"
    assert (record.dropped, record.dropped_total, record.max_bytes) == (1, 1, 3 * size)  # type: ignore[attr-defined]
    buf.close()


def test_checkpointer_folds_the_wal_into_the_database_while_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits never checkpoint (wal_autocheckpoint=0): the checkpointer thread must, or the WAL grows."""
    monkeypatch.setattr(buffer_module, "_CHECKPOINT_INTERVAL_S", 0.01)
    path = tmp_path / "b.sqlite"
    buf = Buffer(path, 10 * 1024 * 1024, THING)
    buf.append_many(full_reading(i) for i in range(60))  # ~50 KB, first written to the WAL only
    deadline = time.monotonic() + 30  # a deadline for a hung test, not a speed target
    while path.stat().st_size <= 32 * 1024:
        assert time.monotonic() < deadline, "no checkpoint into the database file"
        time.sleep(0.01)
    assert buf.stats()["depth"] == {"mqtt": 60, "influx": 60}
    buf.close()


def test_reopening_without_a_sink_frees_rows_only_that_sink_needed(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = Buffer(path, 10 * 1024 * 1024, THING)
    buf.append_many([reading(), reading()])
    mqtt = buf.cursor("mqtt")
    mqtt.ack([e.id for e in mqtt.next_batch(10)])
    assert int(buf.stats()["bytes"]) > 0  # InfluxDB still owes them  # type: ignore[call-overload]
    buf.close()
    reopened = Buffer(path, 10 * 1024 * 1024, THING, sinks=("mqtt",))  # InfluxDB switched off
    assert reopened.stats()["bytes"] == 0
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 0
    reopened.close()


def test_entries_are_immutable(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite", 1024 * 1024, THING)
    buf.append(reading())
    (entry,) = buf.cursor("mqtt").next_batch(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.seq = 9  # type: ignore[misc]
    buf.close()


def test_a_failed_batch_is_rolled_back_and_the_buffer_stays_usable(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite", 1024 * 1024, THING, sinks=("mqtt",))
    bad = Reading("plant-a", None, "F1", 1, {"voltageAN": 1.0})  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):  # asset NOT NULL: fails inside the transaction
        buf.append_many([reading(), bad])
    assert buf.depth("mqtt") == 0 and buf.stats()["bytes"] == 0  # the good row went too
    assert buf.append(reading()) == 1  # seq not consumed by the failed batch
    buf.close()


def test_checkpoint_failures_are_logged_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_connect = sqlite3.connect
    connections: list[object] = []

    class Busy:
        """The checkpointer's connection (the second one opened), always busy."""

        def execute(self, sql: str) -> None:
            raise sqlite3.OperationalError("database is locked")

        def close(self) -> None:
            connections.append("closed")

    def connect(*args: object, **kwargs: object) -> object:
        connections.append(args[0])
        return real_connect(*args, **kwargs) if len(connections) == 1 else Busy()  # type: ignore[arg-type]

    monkeypatch.setattr(buffer_module.sqlite3, "connect", connect)
    monkeypatch.setattr(buffer_module, "_CHECKPOINT_INTERVAL_S", 0.01)
    with caplog.at_level(logging.WARNING, logger="collector.buffer"):
        buf = Buffer(tmp_path / "b.sqlite", 1024 * 1024, THING)
        deadline = time.monotonic() + 30  # a deadline for a hung test, not a speed target
        while sum(r.getMessage() == "buffer checkpoint failed; retrying" for r in caplog.records) < 2:
            assert time.monotonic() < deadline, "no retried checkpoint"
            time.sleep(0.01)
        buf.close()
    assert connections[-1] == "closed"


def test_a_process_that_forgets_close_still_exits(tmp_path: Path) -> None:
    """The checkpointer is a daemon thread: it never keeps a collector process alive."""
    script = f"""
from pathlib import Path
from collector.buffer import Buffer
Buffer(Path({str(tmp_path / "b.sqlite")!r}), 1024 * 1024, "t")
print("done", flush=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "done\n"


def test_checkpointer_thread_lives_exactly_as_long_as_the_buffer(tmp_path: Path) -> None:
    def checkpointers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "buffer-checkpoint"]

    before = len(checkpointers())
    buf = Buffer(tmp_path / "b.sqlite", 1024 * 1024, THING)
    assert len(checkpointers()) == before + 1
    buf.close()  # joins the thread: gone when close returns
    assert len(checkpointers()) == before
