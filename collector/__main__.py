"""`python -m collector --config PATH [--debug] [--healthcheck]`: run the edge collector.

Exit codes: 0 clean stop (SIGTERM/SIGINT), 78 configuration error (EX_CONFIG: one line per problem on
stderr; restarting will not help, fix the config), 1 health check failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from collector.config import load_config
from collector.health import check
from collector.logs import setup_logging
from collector.service import Collector
from collector.validation import ConfigError

EXIT_CONFIG = 78


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m collector", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, type=Path, help="bundle config file, e.g. /bundle/config.yaml")
    p.add_argument("--debug", action="store_true", help="print every decoded reading on stdout")
    p.add_argument(
        "--healthcheck", action="store_true", help="probe the running collector's health endpoint and exit"
    )
    return p


def _log_thread_death(args: threading.ExceptHookArgs) -> None:
    """A worker thread killed by an uncaught error: one JSON log line (health reports it as failing)."""
    logging.getLogger("collector").critical(
        "thread died",
        exc_info=args.exc_value or True,
        extra={"thread": args.thread.name if args.thread is not None else None},
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.debug)
    threading.excepthook = _log_thread_death
    try:
        cfg = load_config(args.config, os.environ)
        if args.healthcheck:
            healthy, summary = check(cfg.health.host, cfg.health.port)
            print(summary)
            return 0 if healthy else 1
        collector = Collector(cfg, debug=args.debug)
    except ConfigError as e:
        for line in str(e).splitlines():
            print(f"config error: {line}", file=sys.stderr)
        return EXIT_CONFIG

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    collector.start()
    stop.wait()
    collector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
