"""Cost of the register-map physics self-check, as a ratio to decoding the same poll.

The poller decodes every poll and runs the self-check (`collector.consistency`) on the first poll of a
meter and then every `SELF_CHECK_PERIOD_S`. This measures, on the simulator's values, the CPU of one
self-check (elements by name + all relations + the monotonic counters) against one decode of the same
four payloads, and the resulting extra CPU per poll at the default period and a 1 s poll interval.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench.report import write_section
from collector.consistency import ConsistencyMonitor
from collector.poller import SELF_CHECK_PERIOD_S
from collector.registers import register_map
from collector.simulator.model import MeterModel


def cpu_per_call(call: Callable[[], object], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - start) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.self_check", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per measurement")
    args = parser.parse_args(argv)
    regmap = register_map()
    payloads = MeterModel(0, regmap).payloads()
    monitor = ConsistencyMonitor()
    decode = cpu_per_call(lambda: regmap.decode(payloads), args.calls)
    check = cpu_per_call(lambda: monitor.observe(regmap.by_name(payloads)), args.calls)
    per_poll = check / SELF_CHECK_PERIOD_S  # 1 s polls: one check every SELF_CHECK_PERIOD_S polls
    body = f"""## Register-map self-check (issue 13)

| | CPU per call |
|---|---|
| decode one poll (101, 102, 107, 108) | {decode * 1e6:.1f} us |
| self-check one poll | {check * 1e6:.1f} us |

- Self-check / decode = **{check / decode:.1f}x**. At the default period ({SELF_CHECK_PERIOD_S:g} s) and 1 s
  polls the self-check adds {per_poll / decode:.1f}x a decode per poll on average
  ({per_poll * 1e6:.0f} us; {per_poll * 100 * 1e3:.1f} ms of CPU per second for 100 meters).
"""
    write_section("self_check", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
