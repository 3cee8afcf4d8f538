"""`python -m collector --config PATH [--debug] [--healthcheck]`: run the edge collector.

Exit codes: 0 clean stop (SIGTERM/SIGINT), 78 configuration error (EX_CONFIG: one line per problem on
stderr; restarting will not help, fix the config), 1 health check failed.

With `--wait-for-valid-config` (the container image's default) a configuration error does not end the
process: it is reported once, the file is checked again every few seconds, and the collector starts
as soon as the operator has fixed the bundle. A container with a broken bundle therefore waits,
unhealthy, instead of crash-looping under its restart policy.
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
    p.add_argument(
        "--wait-for-valid-config",
        action="store_true",
        help="on a configuration error, report it once and wait for the file to be fixed instead of exiting",
    )
    p.add_argument(
        "--config-recheck-s", type=float, default=5.0, help="seconds between re-reads of a broken config"
    )
    return p


def _log_thread_death(args: threading.ExceptHookArgs) -> None:
    """A worker thread killed by an uncaught error: one JSON log line (health reports it as failing)."""
    logging.getLogger("collector").critical(
        "thread died",
        exc_info=args.exc_value or True,
        extra={"thread": args.thread.name if args.thread is not None else None},
    )


def _report(error: ConfigError) -> None:
    for line in str(error).splitlines():
        print(f"config error: {line}", file=sys.stderr, flush=True)


def _build(args: argparse.Namespace, stop: threading.Event) -> Collector | None:
    """The collector for a valid config; with --wait-for-valid-config, wait (None: stopped meanwhile)."""
    reported = ""
    while True:
        try:
            return Collector(load_config(args.config, os.environ), debug=args.debug)
        except ConfigError as e:
            if not args.wait_for_valid_config:
                raise
            if str(e) != reported:  # once per distinct problem, not once per re-check
                _report(e)
                logging.getLogger("collector").error(
                    "waiting for a valid config", extra={"config": str(args.config)}
                )
                reported = str(e)
        if stop.wait(args.config_recheck_s):
            return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.debug)
    threading.excepthook = _log_thread_death
    if args.healthcheck:
        try:
            cfg = load_config(args.config, os.environ)
        except ConfigError as e:
            _report(e)
            return EXIT_CONFIG
        healthy, summary = check(cfg.health.host, cfg.health.port)
        print(summary)
        return 0 if healthy else 1

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        collector = _build(args, stop)
    except ConfigError as e:
        _report(e)
        return EXIT_CONFIG
    if collector is None:
        return 0
    collector.start()
    stop.wait()
    collector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
