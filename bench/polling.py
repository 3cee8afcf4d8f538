"""Meter polling benchmark: the collector's Poller vs a raw pycomm3 read loop, and CPU at 100 meters.

`.venv/bin/python -m bench.polling [--quick]`

Everything runs in THIS process (the "collector"); the simulated meters are child processes, so
`resource.getrusage(RUSAGE_SELF)` measures the collector's own CPU, never the simulators'.

1. Throughput: the same meters polled back-to-back (a) by raw loops, one thread per meter, each
   doing the three Get_Attribute_Single reads with pycomm3 and unpacking them with `struct`, and
   (b) by `collector.poller.Poller` with a 1 ms period (every tick overruns, so it polls flat out).
   Target: Poller >= 85% of the raw loop's polls/s. CPU per poll is reported for both.
2. Fleet: 100 simulated meters at 1 Hz through the Poller. Target: collector CPU < 50% of one core.
   The simulators (cpppo, ~2 ms CPU per read) are spread over several processes.
"""

from __future__ import annotations

import argparse
import resource
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack

from pycomm3 import CIPDriver

from bench.report import write_section
from collector.config import MeterConfig
from collector.poller import Poller
from collector.reading import Reading
from collector.registers import register_map
from collector.simulator.process import SimulatorProcess

# The baseline reads what the Poller reads: every instance of the register map (101, 102, 107, 108).
INSTANCES = tuple(register_map().instances)
UNPACK = {n: inst.unpack for n, inst in register_map().instances.items()}


_halts: list[Callable[[], None]] = []  # synchronous stoppers of whatever is polling right now


def halt_all() -> None:
    """Stop every poller/loop before its simulators go away (else they log connection errors)."""
    while _halts:
        _halts.pop()()


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_simulators(stack: ExitStack, meters: int, per_process: int) -> list[int]:
    ports: list[int] = []
    remaining = meters
    while remaining:
        n = min(per_process, remaining)
        sim = stack.enter_context(SimulatorProcess(meters=n))
        ports += sim.ports
        remaining -= n
    return ports


def meter_configs(ports: Sequence[int]) -> list[MeterConfig]:
    return [
        MeterConfig(asset=f"m{i:03d}", breaker=f"B{i}", host="127.0.0.1", port=p) for i, p in enumerate(ports)
    ]


def measure(run: Callable[[threading.Event], Callable[[], int]], seconds: float) -> tuple[int, float, float]:
    """Start `run`, let it warm up, then count polls and process CPU over `seconds`."""
    stop = threading.Event()
    count = run(stop)
    time.sleep(min(2.0, seconds / 3))  # warm-up: sessions opened, size checks done
    polls0, cpu0, wall0 = count(), cpu_s(), time.monotonic()
    time.sleep(seconds)
    polls, cpu, wall = count() - polls0, cpu_s() - cpu0, time.monotonic() - wall0
    stop.set()
    halt_all()
    return polls, cpu, wall


def raw_loops(ports: Sequence[int]) -> Callable[[threading.Event], Callable[[], int]]:
    """Baseline: what a hand-written pycomm3 loop achieves (no state, no errors handled)."""

    def run(stop: threading.Event) -> Callable[[], int]:
        counts = [0] * len(ports)

        def loop(i: int, port: int) -> None:
            with CIPDriver(f"127.0.0.1:{port}") as drv:
                while not stop.is_set():
                    for inst in INSTANCES:
                        tag = drv.generic_message(
                            service=0x0E,
                            class_code=0x04,
                            instance=inst,
                            attribute=3,
                            connected=False,
                            unconnected_send=False,
                            route_path=False,
                        )
                        UNPACK[inst](tag.value)
                    counts[i] += 1

        threads = [threading.Thread(target=loop, args=(i, port), daemon=True) for i, port in enumerate(ports)]
        for t in threads:
            t.start()
        _halts.append(lambda: [t.join(10) for t in threads] and None)
        return lambda: sum(counts)

    return run


def poller_run(
    ports: Sequence[int], interval_s: float, timeout_s: float | None = None
) -> Callable[[threading.Event], Callable[[], int]]:
    def run(stop: threading.Event) -> Callable[[], int]:
        lock = threading.Lock()
        counter = [0]

        def on_reading(reading: Reading) -> None:
            with lock:
                counter[0] += 1

        poller = Poller("bench", meter_configs(ports), interval_s, on_reading, timeout_s=timeout_s)
        poller.start()
        _halts.append(poller.stop)
        return lambda: counter[0]

    return run


def measure_together(
    runs: dict[str, Callable[[threading.Event], Callable[[], int]]], seconds: float
) -> dict[str, float]:
    """Run several pollers at the same time and return each one's polls/s over the same window.

    The machine is shared and noisy; running baseline and candidate side by side, against meters
    served by the same simulator processes, exposes both to the same noise."""
    stop = threading.Event()
    counts = {name: run(stop) for name, run in runs.items()}
    time.sleep(2.0)
    start = {name: count() for name, count in counts.items()}
    wall0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - wall0
    rates = {name: (count() - start[name]) / wall for name, count in counts.items()}
    stop.set()
    halt_all()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test, numbers are noisy)")
    parser.add_argument("--fleet", type=int, default=100, help="meters in the 1 Hz fleet run")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else 20.0
    register_map()  # load once, outside the measurements

    with ExitStack() as stack:
        # 4 simulator processes x 2 meters: in each process one meter for the raw loop, one for the Poller.
        ports = start_simulators(stack, 8, per_process=2)
        raw_ports, poller_ports = ports[0::2], ports[1::2]
        rates = measure_together(
            {"raw": raw_loops(raw_ports), "poller": poller_run(poller_ports, 0.001, timeout_s=2.0)}, seconds
        )
        time.sleep(1.0)
        # CPU per poll: each alone (getrusage is per process), alternated to spread the noise.
        cpu = {"raw": [0.0, 0], "poller": [0.0, 0]}
        for _ in range(2):
            for name, run in (
                ("raw", raw_loops(raw_ports)),
                ("poller", poller_run(poller_ports, 0.001, 2.0)),
            ):
                polls, used, _ = measure(run, seconds / 2)
                cpu[name][0] += used
                cpu[name][1] += polls
                time.sleep(1.0)
    raw_rate, pol_rate = rates["raw"], rates["poller"]
    raw_cpu_ms, pol_cpu_ms = (1000 * cpu[n][0] / max(cpu[n][1], 1) for n in ("raw", "poller"))

    with ExitStack() as stack:
        fleet_ports = start_simulators(stack, args.fleet, per_process=25)
        fleet_seconds = 15.0 if args.quick else 60.0
        fleet_polls, fleet_cpu, fleet_wall = measure(poller_run(fleet_ports, 1.0), fleet_seconds)
    expected = args.fleet * fleet_wall
    fleet_core = fleet_cpu / fleet_wall

    throughput_ratio = pol_rate / raw_rate
    verdict = "PASS" if throughput_ratio >= 0.85 else "FAIL"
    fleet_verdict = "PASS" if fleet_core < 0.5 else "FAIL"
    body = f"""
### Meter polling (EtherNet/IP, 3 x Get_Attribute_Single per poll)

Simulated meters: `python -m collector.simulator` (cpppo) child processes on 127.0.0.1. CPU is the
benchmark process's own (`getrusage(RUSAGE_SELF)`: Poller or raw-loop threads), never the
simulators'. Readings go to a counting callback (no buffer or sinks in this measurement).

Throughput: 4 simulator processes x 2 meters; in each process one meter is polled back-to-back by a
raw pycomm3 loop (one thread per meter: a read + `struct.unpack` per mapped instance), the other by
`collector.poller.Poller` (1 ms period, so every tick overruns and it polls flat out), both at the
same time for {seconds:.0f} s so they share the same (noisy, 2-core) machine. CPU per poll: each
variant alone, alternated twice, {seconds / 2:.0f} s per window.

| 4 meters each, polled back-to-back | polls/s | collector CPU per poll |
|---|---:|---:|
| raw pycomm3 loop (baseline) | {raw_rate:.1f} | {raw_cpu_ms:.2f} ms |
| `collector.poller.Poller` | {pol_rate:.1f} | {pol_cpu_ms:.2f} ms |

- **Throughput: Poller / raw loop = {throughput_ratio:.0%}** (target >= 85%): {verdict}. Both are
  bound by the simulator (cpppo burns ~2 ms CPU per reply).
- CPU per poll: Poller / raw loop = {pol_cpu_ms / raw_cpu_ms:.2f}x (the Poller also decodes 30
  named metrics, builds the Reading and keeps per-meter status).

| fleet run | value |
|---|---:|
| meters at 1 Hz | {args.fleet} (simulators: {(args.fleet + 24) // 25} processes) |
| measured for | {fleet_wall:.0f} s |
| readings / expected (meters x seconds) | {fleet_polls} / {expected:.0f} = {fleet_polls / expected:.1%} |
| **collector CPU** | **{fleet_core:.1%} of one core** (target < 50%): {fleet_verdict} |
| collector CPU per poll | {1000 * fleet_cpu / max(fleet_polls, 1):.2f} ms |
"""
    write_section("polling", body)
    print(body)


if __name__ == "__main__":
    main()
