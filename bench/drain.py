"""Backlog drain rate vs a raw paho QoS 1 TLS publish loop; the whole collector's CPU and latency.

`.venv/bin/python -m bench.drain [--backlog N] [--meters M] [--fleet-s S]`

Drain: N readings are committed to a buffer file (not timed), then the collector's MQTT sink drains
them to a local Mosquitto (mutual TLS) until every PUBACK is committed back to the buffer (timed from
`start()`, TLS handshake included). Baseline: one paho client, already connected, publishing the same
N DDATA payloads at QoS 1 over TLS to the same broker, as fast as it can, until every PUBACK arrived
(no buffer, no acks to disk). Goal: drain >= 50% of baseline.

Fleet: the whole collector in this process (poller, buffer, MQTT sink, InfluxDB sink, health) polling
M meters at 1 Hz for S seconds: this process's CPU (`getrusage(RUSAGE_SELF)`, meters excluded; goal
< 50% of one core at 100 meters) and, per reading, the time from its poll timestamp to its PUBACK
being committed in the buffer, split into stages (bench/latency.py). Goal: reading appended -> PUBACK
committed, p99 <= 20 ms. Fleet variants (`--stand-ins`, all by default): `replay` (the meters are
`bench.replay_meters`: cpppo's recorded replies, ~25 us of CPU per request), `replay-nodelay` (the
same, with a broker that has Mosquitto's `set_tcp_nodelay` on) and `cpppo` (`python -m
collector.simulator` child processes, ~13 ms of CPU per request: 100 of them at 1 Hz take 1.3 of the
machine's 2 cores, so the collector's latency there is mostly waiting for a core).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import struct
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.latency import STAGES, StageClock
from bench.replay_meters import ReplayMeters, record
from bench.report import write_section
from collector import topics
from collector.buffer import Buffer, Entry
from collector.config import CollectorConfig, load_config
from collector.metrics import METRICS
from collector.mqtt_link import tls_context
from collector.mqtt_sink import MqttSink
from collector.payload import ddata, encode
from collector.reading import Reading
from collector.service import Collector
from collector.simulator.process import SimulatorProcess
from collector.wire import make_wire
from sandbox.ca import DevCA
from sandbox.influx import InfluxServer
from sandbox.mosquitto import MosquittoBroker
from sandbox.net import free_port
from tests.collector.harness import SITE, THING, write_bundle

# The baseline sends payloads of the collector's exact size: a buffer_id like a real buffer's (a UUID).
BASELINE_BUFFER_ID = "00000000-0000-4000-8000-000000000000"

WINDOW = 256
FLOAT32 = struct.Struct(f"<{len(METRICS)}f")
FLEET_VARIANTS = ("replay", "replay-nodelay", "cpppo")
SIMULATOR_METERS_PER_PROCESS = 25  # cpppo burns ~13 ms CPU per Multiple Service reply: 4 processes


def readings(n: int) -> list[Reading]:
    """Readings as the poller makes them: float32 register values widened to Python floats."""
    start = int(time.time() * 1000) - n

    def values(i: int) -> dict[str, float]:
        raw = [100.0 + j + (i % 997) / 7 for j in range(len(METRICS))]
        return dict(zip((m.name for m in METRICS), FLOAT32.unpack(FLOAT32.pack(*raw)), strict=True))

    return [Reading(SITE, f"meter-{i % 10}", f"F{i % 10}", start + i, values(i)) for i in range(n)]


def baseline_rate(cfg: CollectorConfig, batch: list[Reading]) -> float:
    """Raw paho: publish every payload at QoS 1 over TLS, wait for all PUBACKs. Messages/s."""
    payloads = [
        (topics.DDATA.render(THING, r.asset), encode(ddata(r, THING, i + 1, buffer_id=BASELINE_BUFFER_ID)))
        for i, r in enumerate(batch)
    ]
    done = threading.Event()
    acked = 0

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(payloads):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=THING, protocol=mqtt.MQTTv311)
    client.tls_set_context(tls_context(cfg))
    client.max_inflight_messages_set(WINDOW)
    client.on_publish = on_publish
    client.connect(cfg.mqtt.endpoint, cfg.mqtt.port)
    client.loop_start()
    time.sleep(0.5)
    started = time.perf_counter()
    for topic, body in payloads:
        client.publish(topic, body, qos=1)
    done.wait(300)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return len(payloads) / elapsed


def drain_rate(cfg: CollectorConfig, batch: list[Reading]) -> float:
    """Readings/s from `start()` until every buffered row is acknowledged in the buffer, in `cfg`'s
    encoding (bench/encoding.py drains each mode with it)."""
    wire = make_wire(cfg)
    buffer = Buffer(cfg.buffer.path, cfg.buffer.max_bytes, THING, sinks=("mqtt",),
                    ddata_encoder=wire.ddata_row)
    buffer.append_many(batch)
    done = threading.Event()
    delivered = 0

    def count(entries: Sequence[Entry], acked_ms: int) -> None:
        nonlocal delivered
        delivered += len(entries)
        if delivered >= len(batch):
            done.set()

    sink = MqttSink(cfg, buffer, window=WINDOW, on_delivered=count, wire=wire)
    sink.note_reading(batch[-1])  # the meter answered: Sparkplug B births need not wait for a poll
    started = time.perf_counter()
    sink.start()
    done.wait(300)
    elapsed = time.perf_counter() - started
    assert buffer.depth("mqtt") == 0, "drain incomplete"
    sink.stop()
    buffer.close()
    return len(batch) / elapsed


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


Fleet = tuple[list[float], dict[str, list[float]], float, int]


def fleet(
    workdir: Path, ca: DevCA, broker: MosquittoBroker, meters: int, seconds: float, stand_in: str
) -> Fleet:
    """The whole collector on `meters` meters (`stand_in`: replay or cpppo) at 1 Hz: (poll -> committed
    ms, stage ms, CPU share, readings)."""
    warmup_s = 5.0
    with ExitStack() as stack:
        ports: list[int] = []
        if stand_in.startswith("replay"):
            ports = stack.enter_context(ReplayMeters(workdir / "recording.json", meters)).ports
        else:
            while len(ports) < meters:
                n = min(SIMULATOR_METERS_PER_PROCESS, meters - len(ports))
                ports += stack.enter_context(SimulatorProcess(meters=n)).ports
        influx = InfluxServer(workdir / "influxdb")
        influx.start()
        stack.callback(influx.stop)
        influx.create_database("pm500")
        config = write_bundle(workdir / "fleet", ca, broker, ports, influx.url, "pm500", poll_interval_s=1.0)
        clock = StageClock()
        collector = Collector(load_config(config), poller_factory=clock.poller_factory)
        collector.mqtt.on_timed = clock.on_timed
        samples: list[float] = []
        measuring = False

        def record(entries: Sequence[Entry], acked_ms: int) -> None:
            if measuring:
                samples.extend(acked_ms - e.timestamp_ms for e in entries)

        collector.mqtt.on_delivered = record
        collector.start()
        try:
            time.sleep(warmup_s)  # sessions opened, size checks done, first readings out
            readings0, cpu0, wall0 = collector.counters["readings"], cpu_s(), time.monotonic()
            measuring = clock.measuring = True
            time.sleep(seconds)
            measuring = clock.measuring = False
            cpu, wall = cpu_s() - cpu0, time.monotonic() - wall0
            readings = collector.counters["readings"] - readings0
        finally:
            collector.stop()
    return samples, clock.samples, cpu / wall, readings


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{percentile(values, 50):.1f} / {percentile(values, 99):.1f}"


def _runs(values: list[float], pct: bool = False) -> str:
    return ", ".join(f"{v:.0%}" if pct else f"{v:,.0f}" for v in values)


STAGE_TITLES = {
    "round_trip": "meter round trip (one 0x0A request)",
    "decode_append": "decode + buffer append (commit)",
    "append_publish": "append -> publish",
    "publish_puback": "publish -> PUBACK",
    "puback_commit": "PUBACK -> ack committed",
    "append_committed": "**appended -> PUBACK committed** (goal p99 <= 20 ms)",
}


def _fleet_table(named_runs: list[tuple[str, Fleet]], expected: float) -> str:
    runs = [run for _, run in named_runs]
    header = "| | " + " | ".join(name for name, _ in named_runs) + " |"
    rows = [header, "|---|" + "---:|" * len(runs)]
    rows.append(
        "| readings committed / expected | "
        + " | ".join(f"{polled} / {expected:.0f} = {polled / expected:.1%}" for _, _, _, polled in runs)
        + " |"
    )
    rows.append(
        "| **collector CPU** (goal < 50% of one core) | "
        + " | ".join(f"{cpu:.1%}" for _, _, cpu, _ in runs)
        + " |"
    )
    for stage in STAGES:
        rows.append(
            f"| {STAGE_TITLES[stage]}, p50 / p99 ms | "
            + " | ".join(percentiles(stages[stage]) for _, stages, _, _ in runs)
            + " |"
        )
    rows.append(
        "| poll -> PUBACK committed (wall clock), p50 / p99 ms | "
        + " | ".join(percentiles(total) for total, _, _, _ in runs)
        + " |"
    )
    verdicts = ["PASS" if percentile(s["append_committed"], 99) <= 20 else "FAIL" for _, s, _, _ in runs]
    rows.append("| appended -> PUBACK committed p99 <= 20 ms | " + " | ".join(verdicts) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2, help="baseline and drain runs, alternated")
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--fleet-s", type=float, default=30.0)
    parser.add_argument("--fleet-runs", type=int, default=2, help="fleet runs per stand-in (each reported)")
    parser.add_argument(
        "--stand-ins",
        default=",".join(FLEET_VARIANTS),
        help=f"fleet variants, comma-separated, of {', '.join(FLEET_VARIANTS)}",
    )
    args = parser.parse_args()
    stand_ins = args.stand_ins.split(",")
    if not set(stand_ins) <= set(FLEET_VARIANTS):
        parser.error(f"--stand-ins: expected some of {','.join(FLEET_VARIANTS)}; got {args.stand_ins!r}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ca = DevCA.create(work / "ca")
        broker = MosquittoBroker(work / "mosquitto", ca)
        broker.start()
        try:
            cfg = load_config(write_bundle(work / "bundle", ca, broker, [free_port()], influx_url=None))
            batch = readings(args.backlog)
            base_rates, drain_rates = [], []
            for _ in range(args.rounds):  # alternated, so both see the same (noisy, shared) machine
                base_rates.append(baseline_rate(cfg, batch))
                drain_rates.append(drain_rate(cfg, batch))
            if any(s.startswith("replay") for s in stand_ins):
                record(work / "recording.json")
            nodelay = MosquittoBroker(work / "mosquitto-nodelay", ca, tcp_nodelay=True)
            if "replay-nodelay" in stand_ins:
                nodelay.start()
            try:
                runs = [
                    (
                        f"{stand_in} run {k + 1}",
                        fleet(
                            work,
                            ca,
                            nodelay if stand_in == "replay-nodelay" else broker,
                            args.meters,
                            args.fleet_s,
                            stand_in,
                        ),
                    )
                    for stand_in in stand_ins
                    for k in range(args.fleet_runs)
                ]
            finally:
                nodelay.stop()
        finally:
            broker.stop()
    base, drain = statistics.mean(base_rates), statistics.mean(drain_rates)
    ratio = drain / base
    ratios = _runs([d / b for b, d in zip(base_rates, drain_rates, strict=True)], pct=True)
    payload_kb = len(encode(ddata(batch[0], THING, 1, buffer_id=BASELINE_BUFFER_ID))) / 1024
    expected = args.meters * args.fleet_s
    body = f"""
## Backlog drain (store-and-forward replay), collector CPU and the latency budget

The machine is a 2-core virtual machine whose speed varies between runs (and may be shared), so
absolute numbers are noisy; ratios are measured against a baseline in the same run.

Local Mosquitto 2.0 with mutual TLS 1.2, QoS 1, in-flight window {WINDOW}, {args.backlog} buffered
readings (DDATA {payload_kb:.1f} KB each); {args.rounds} alternated runs per row.

| | messages/s (mean) | runs |
|---|---:|---|
| baseline: raw paho QoS 1 TLS publish loop (no buffer) | {base:,.0f} | {_runs(base_rates)} |
| collector: buffer -> MQTT sink, acks committed to SQLite | {drain:,.0f} | {_runs(drain_rates)} |
| **ratio** (goal >= 80%) | **{ratio:.0%}**: {"PASS" if ratio >= 0.8 else "FAIL"} | {ratios} |

The whole collector (poller, buffer, MQTT and InfluxDB sinks, health) in one process, {args.meters}
meters at 1 Hz (one Multiple Service Packet per poll), {args.fleet_s:g} s after a 5 s warm-up,
Mosquitto and InfluxDB 1.x local; {args.fleet_runs} run(s) per meter stand-in, one column each:
*replay* = `bench.replay_meters`, one process answering every meter with the cpppo simulator's
recorded replies (~25 us of CPU per request), broker with Mosquitto's defaults; *replay-nodelay* =
the same with Mosquitto's `set_tcp_nodelay true` (without it Nagle's algorithm holds each PUBACK until
the collector's next packet acknowledges the previous one: about one message interval, 10 ms at 100
readings/s); *cpppo* = the cpppo simulator, 4 processes, ~13 ms of CPU per request, so 100 meters take
1.3 of the 2 cores and everything else waits for a core. Stages are timed with one clock in the
collector's process (`bench/latency.py`):

{_fleet_table(runs, expected)}

*round trip* = the meter request (a stand-in in another process on the same 2 cores);
*append -> publish* = the MQTT sink noticing the row and handing it to paho; *publish -> PUBACK* =
paho's network thread, the TLS broker and back; *PUBACK -> committed* = the sink committing the ack
to SQLite. **Goal: appended -> PUBACK committed p99 <= 20 ms.**
"""
    write_section("drain", body)
    print(body)


if __name__ == "__main__":
    main()
