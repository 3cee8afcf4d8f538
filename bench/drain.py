"""Backlog drain rate vs a raw paho QoS 1 TLS publish loop, and poll -> PUBACK latency.

`.venv/bin/python -m bench.drain [--backlog N] [--latency-s S]`

Drain: N readings are committed to a buffer file (not timed), then the collector's MQTT sink drains
them to a local Mosquitto (mutual TLS) until every PUBACK is committed back to the buffer. Baseline:
one paho client publishing the same N DDATA payloads at QoS 1 over TLS to the same broker, as fast
as it can, until every PUBACK arrived (no buffer, no acks to disk). Goal: drain >= 50% of baseline.

Latency: the full collector (simulated meters via `python -m collector.simulator`, poller, buffer,
MQTT sink) runs for S seconds; per reading, PUBACK time minus the reading's poll timestamp.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.report import write_section
from collector import topics
from collector.buffer import Buffer, Entry
from collector.config import CollectorConfig
from collector.metrics import METRICS
from collector.mqtt_link import tls_context
from collector.mqtt_sink import MqttSink
from collector.payload import ddata, encode
from collector.reading import Reading
from collector.service import Collector
from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from sandbox.net import free_port
from tests.collector.harness import SITE, THING, Simulator, write_bundle

WINDOW = 256


def readings(n: int) -> list[Reading]:
    values = {m.name: 100.0 + i for i, m in enumerate(METRICS)}
    start = int(time.time() * 1000) - n
    return [Reading(SITE, f"meter-{i % 10}", f"F{i % 10}", start + i, values) for i in range(n)]


def baseline_rate(cfg: CollectorConfig, batch: list[Reading]) -> float:
    """Raw paho: publish every payload at QoS 1 over TLS, wait for all PUBACKs. Messages/s."""
    payloads = [
        (topics.DDATA.render(THING, r.asset), encode(ddata(r, THING, i + 1))) for i, r in enumerate(batch)
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
    buffer = Buffer(cfg.buffer.path, cfg.buffer.max_bytes, sinks=("mqtt",))
    buffer.append_many(batch)
    sink = MqttSink(cfg, buffer, window=WINDOW)
    started = time.perf_counter()
    sink.start()
    while buffer.depth("mqtt") > 0:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    sink.stop()
    buffer.close()
    return len(batch) / elapsed


def latency(workdir: Path, ca: DevCA, broker: MosquittoBroker, seconds: float) -> tuple[list[float], int]:
    sim = Simulator(workdir, meters=10).start()
    try:
        config = write_bundle(workdir / "live", ca, broker, sim.ports, influx_url=None, poll_interval_s=1.0)
        from collector.config import load_config

        collector = Collector(load_config(config))
        samples: list[float] = []

        def record(entries: list[Entry] | tuple[Entry, ...], acked_ms: int) -> None:
            samples.extend(acked_ms - e.reading.timestamp_ms for e in entries)

        collector.mqtt.on_delivered = record  # type: ignore[assignment]
        collector.start()
        time.sleep(seconds)
        collector.stop()
        return samples, 10
    finally:
        sim.stop()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--latency-s", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ca = DevCA.create(work / "ca")
        broker = MosquittoBroker(work / "mosquitto", ca)
        broker.start()
        try:
            config_path = write_bundle(work / "bundle", ca, broker, [free_port()], influx_url=None)
            from collector.config import load_config

            cfg = load_config(config_path)
            batch = readings(args.backlog)
            base = baseline_rate(cfg, batch)
            drain = drain_rate(cfg, batch)
            samples, meters = latency(work, ca, broker, args.latency_s)
        finally:
            broker.stop()
    ratio = drain / base
    body = f"""
## Backlog drain (store-and-forward replay) and poll -> PUBACK latency

Local Mosquitto 2.0 with mutual TLS 1.2, QoS 1, in-flight window {WINDOW}, {args.backlog} buffered
readings (DDATA ~2.9 KB each).

| | messages/s |
|---|---|
| baseline: raw paho QoS 1 TLS publish loop (no buffer) | {base:,.0f} |
| collector: buffer -> MQTT sink, acks committed to SQLite | {drain:,.0f} |
| **ratio** (goal >= 50%) | **{ratio:.0%}** |

Poll -> PUBACK latency, {meters} simulated meters at 1 Hz for {args.latency_s:g} s ({len(samples)} readings;
from the reading's poll timestamp to the PUBACK being committed in the buffer):
p50 **{percentile(samples, 50):.0f} ms**, p99 **{percentile(samples, 99):.0f} ms**, max {max(samples):.0f} ms.
"""
    write_section("drain", body)
    print(body)


if __name__ == "__main__":
    main()
