"""Loopback HTTP control API of the simulator (fault injection, ground truth) and its client.

GET  /meters                     -> [{index, port, requests, faults}]
GET  /meters/<i>/registers       -> {"registers": {name: value}}  (the values being served)
POST /meters/<i>/faults   {...}  -> partial update, e.g. {"delay_ms": 3000} or {"cip_status": 8}
POST /meters/<i>/reset           -> all faults cleared, 4-wire, no alarm, outputs off
POST /meters/<i>/freeze   {"frozen": true|false}  -> stop/restart value changes
POST /meters/<i>/status   {"alarms": [2], "outputs": [1]}  -> active virtual alarms / output ports (108)
POST /meters/<i>/wiring   {"wiring": "3-wire"|"4-wire"}    -> electrical system with or without neutral
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from collector.simulator.server import BIND_HOST, Faults, SimulatedMeter

_ROUTE = re.compile(r"^/meters(?:/(\d+)(?:/(registers|faults|reset|freeze|status|wiring))?)?$")


class ControlServer:
    def __init__(self, meters: list[SimulatedMeter], port: int = 0) -> None:
        self._meters = meters
        self._httpd = ThreadingHTTPServer((BIND_HOST, port), self._handler())
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="sim-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        meters = self._meters

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self) -> tuple[SimulatedMeter | None, str | None] | None:
                m = _ROUTE.match(self.path)
                if not m:
                    return None
                if m.group(1) is None:
                    return None, None
                index = int(m.group(1))
                if index >= len(meters):
                    return None
                return meters[index], m.group(2)

            def do_GET(self) -> None:
                route = self._route()
                if route is None:
                    return self._reply(404, {"error": f"no such resource {self.path}"})
                meter, action = route
                if meter is None:
                    return self._reply(200, [m.describe() for m in meters])
                if action == "registers":
                    return self._reply(200, {"registers": meter.model.registers()})
                return self._reply(200, meter.describe())

            def do_POST(self) -> None:
                route = self._route()
                if route is None or route[0] is None:
                    return self._reply(404, {"error": f"no such resource {self.path}"})
                meter, action = route
                assert meter is not None
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    if action == "faults":
                        meter.faults.update(body)
                    elif action == "reset":
                        meter.faults = Faults()
                        meter.model.set_wiring("4-wire")
                        meter.model.set_status([], [])
                    elif action == "freeze":
                        meter.model.freeze(bool(body.get("frozen", True)))
                    elif action == "status":
                        meter.model.set_status(list(body.get("alarms", [])), list(body.get("outputs", [])))
                    elif action == "wiring":
                        meter.model.set_wiring(str(body.get("wiring")))
                    else:
                        return self._reply(405, {"error": f"POST not supported on {self.path}"})
                except (ValueError, TypeError, AttributeError) as e:
                    return self._reply(400, {"error": str(e)})
                return self._reply(200, meter.describe())

        return Handler


class SimulatorControl:
    """Client of the control API (tests, benchmark, demo)."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        if not url.startswith(f"http://{BIND_HOST}:"):
            raise ValueError(f"control URL must be loopback http://{BIND_HOST}:<port>, got {url!r}")
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310 - loopback only
        with urllib.request.urlopen(req, timeout=self._timeout_s) as resp:  # noqa: S310
            return json.loads(resp.read())

    def meters(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/meters")
        return result

    def registers(self, index: int) -> dict[str, float]:
        result: dict[str, float] = self._call("GET", f"/meters/{index}/registers")["registers"]
        return result

    def set_faults(self, index: int, **faults: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/meters/{index}/faults", faults)
        return result

    def reset(self, index: int) -> None:
        self._call("POST", f"/meters/{index}/reset", {})

    def freeze(self, index: int, frozen: bool = True) -> None:
        self._call("POST", f"/meters/{index}/freeze", {"frozen": frozen})

    def set_status(self, index: int, alarms: Sequence[int] = (), outputs: Sequence[int] = ()) -> None:
        """Raise the virtual alarms / switch on the output ports listed (all others off)."""
        self._call("POST", f"/meters/{index}/status", {"alarms": list(alarms), "outputs": list(outputs)})

    def set_wiring(self, index: int, wiring: str) -> None:
        self._call("POST", f"/meters/{index}/wiring", {"wiring": wiring})
