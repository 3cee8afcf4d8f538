"""Loopback HTTP health endpoint: `GET /health` -> JSON status, per-meter state, buffer depth, counters.

The image's HEALTHCHECK calls it (`python -m collector --healthcheck`). HTTP 200 while the collector can
do its job (every worker thread alive, buffer writable); 503 otherwise. A broker or InfluxDB outage is
reported (`status: degraded`) but is not unhealthy: restarting the container would not fix the network,
and the buffer is doing exactly what it is for.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

PATH = "/health"
UNHEALTHY = "failing"


class HealthServer:
    def __init__(self, host: str, port: int, snapshot: Callable[[], dict[str, Any]]) -> None:
        handler = _handler(snapshot)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(snapshot: Callable[[], dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != PATH:
                self.send_error(404)
                return
            body = snapshot()
            data = json.dumps(body, default=str).encode()
            self.send_response(503 if body.get("status") == UNHEALTHY else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # the HEALTHCHECK would flood the log
            pass

    return Handler


def check(host: str, port: int, timeout_s: float = 5.0) -> tuple[bool, str]:
    """Probe a running collector: (healthy, one-line summary). Used by the container HEALTHCHECK."""
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 (comparison, not a bind)
    url = f"http://{probe_host}:{port}{PATH}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = json.load(response)
    except urllib.error.HTTPError as e:
        return False, f"{url}: HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return False, f"{url}: {getattr(e, 'reason', e)}"
    return True, f"{url}: {body.get('status')}"
