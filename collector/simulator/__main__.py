"""`python -m collector.simulator`: serve N simulated PM500s on 127.0.0.1 until SIGTERM/SIGINT.

When every listener is bound it prints ONE JSON line on stdout, e.g.
`{"control": "http://127.0.0.1:40123", "meters": [{"index": 0, "port": 44818}, ...]}`,
which `collector.simulator.process.SimulatorProcess` waits for.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from collector.registers import register_map
from collector.simulator.control import ControlServer
from collector.simulator.server import BIND_HOST, SimulatorServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collector.simulator", description=__doc__)
    parser.add_argument("--meters", type=int, default=1, help="number of simulated meters (one port each)")
    parser.add_argument(
        "--base-port",
        type=int,
        default=44818,
        help="first EtherNet/IP port; meter i listens on base+i (0: ephemeral ports)",
    )
    parser.add_argument(
        "--control-port", type=int, default=0, help="loopback HTTP control port (0: ephemeral)"
    )
    parser.add_argument("--log-level", default="WARNING", help="Python log level for the simulator itself")
    args = parser.parse_args(argv)
    if not 1 <= args.meters <= 1000:
        parser.error("--meters must be 1..1000")
    if args.base_port and not 1 <= args.base_port <= 65535 - args.meters:
        parser.error("--base-port must leave room for every meter's port (or be 0)")

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # cpppo logs every connection at its NORMAL level; keep it to warnings unless asked.
    logging.getLogger("cpppo").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("enip").setLevel(max(logging.WARNING, logging.getLogger().level))

    server = SimulatorServer(args.meters, args.base_port, register_map())
    try:
        server.start()
    except RuntimeError as e:
        print(f"simulator: {e}", file=sys.stderr)
        return 1
    control = ControlServer(server.meters, args.control_port)
    control.start()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ready = {
        "control": f"http://{BIND_HOST}:{control.port}",
        "meters": [{"index": m.index, "port": m.port} for m in server.meters],
    }
    print(json.dumps(ready), flush=True)
    stop.wait()
    control.stop()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
