"""Run the simulator as a child process (tests, benchmark, demo) and wait until it is listening."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from types import TracebackType

from collector.simulator.control import SimulatorControl


class SimulatorProcess:
    """`with SimulatorProcess(meters=2) as sim: sim.ports, sim.control.set_faults(0, delay_ms=500)`."""

    def __init__(self, meters: int = 1, base_port: int = 0, start_timeout_s: float = 30.0) -> None:
        self.meters, self.base_port, self.start_timeout_s = meters, base_port, start_timeout_s
        self.ports: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: SimulatorControl | None = None
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child process

    @property
    def control(self) -> SimulatorControl:
        if self._control is None:
            raise RuntimeError("simulator not started")
        return self._control

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("simulator not started")
        return self._proc.pid

    def start(self) -> SimulatorProcess:
        cmd = [
            sys.executable,
            "-m",
            "collector.simulator",
            "--meters",
            str(self.meters),
            "--base-port",
            str(self.base_port),
        ]
        # stderr goes to a file, not a pipe: a chatty child must never block on a full pipe.
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._errors)
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout_s
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"simulator did not start: {self.stderr()[-2000:]}")
            ready, _, _ = select.select([self._proc.stdout], [], [], min(remaining, 0.5))
            if ready:
                chunk = os.read(self._proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                line += chunk
        info = json.loads(line.decode())
        self.ports = [m["port"] for m in info["meters"]]
        self._control = SimulatorControl(info["control"])
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc)

    def kill(self) -> None:
        """SIGKILL: the meter vanishes without closing its connections (chaos tests)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stderr(self) -> str:
        """What the simulator logged so far (warnings and errors)."""
        self._errors.seek(0)
        return self._errors.read().decode(errors="replace")

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def terminate(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM a child server and wait for it; SIGKILL it if it has not exited within `timeout_s`."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
