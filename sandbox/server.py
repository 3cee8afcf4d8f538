"""Common life cycle of the sandbox servers that run as child processes (Mosquitto, influxd)."""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Self

from sandbox.net import LOOPBACK, free_port
from sandbox.procs import ManagedProcess

START_TIMEOUT = 30.0  # generous: the CI machine has 2 shared cores
_PORT_ATTEMPTS = 3  # free_port() can race with another process picking the same port


class ServerStartError(RuntimeError):
    """A sandbox server exited or never became ready; the message carries its log tail."""


class PortInUseError(ServerStartError):
    """The server could not bind its port because another process holds it."""


class ChildServer(ABC):
    """A server on 127.0.0.1:`port` run as a `ManagedProcess`, logging to `workdir/<name>.log`.

    Subclasses write their config in `_prepare()`, name their command in `_command()` and block in
    `_wait_ready()` until clients can use the server. Usable as a context manager.

    With `port=None` a free port is picked, and picked again if another process takes it before the
    server binds it (first start only: `restart()` always keeps the port clients know).
    """

    name: str
    debian_package: str  # named in the error when the binary is missing
    host = LOOPBACK

    def __init__(self, workdir: Path, port: int | None) -> None:
        self.workdir = Path(workdir).absolute()  # children run with cwd=workdir
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self.log_path = self.workdir / f"{self.name}.log"
        self._process: ManagedProcess | None = None
        self._started_once = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    @abstractmethod
    def _prepare(self) -> None:
        """Write config files and credentials (called once per `start()`, idempotent)."""

    @abstractmethod
    def _command(self) -> list[str]:
        """The argv that runs the server in the foreground."""

    @abstractmethod
    def _wait_ready(self, process: ManagedProcess, timeout: float) -> None:
        """Return once the server serves requests; raise (e.g. `PortTimeout`) otherwise."""

    def _pick_ports(self) -> None:
        """Choose new free ports after a bind clash (subclasses with more ports extend this)."""
        self.port = free_port()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server and return when it is ready; raise `ServerStartError` with its log if not."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        attempts = _PORT_ATTEMPTS if self._auto_port and not self._started_once else 1
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout)
            except PortInUseError:
                if attempt == attempts:
                    raise
                self._pick_ports()
            else:
                self._started_once = True
                return

    def _start_once(self, timeout: float) -> None:
        program = self._command()[0]
        if shutil.which(program) is None:
            raise ServerStartError(
                f"{program} is not installed: install the Debian package {self.debian_package!r} "
                "(./dev setup does it)"
            )
        self._prepare()
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        process = ManagedProcess(self._command(), self.log_path, cwd=self.workdir)
        try:
            process.start()
            self._process = process
            self._wait_ready(process, timeout)
        except Exception as exc:  # whatever failed, never leave a half-started server behind
            process.stop()
            self._process = None
            with self.log_path.open("rb") as fh:
                fh.seek(log_offset)
                this_run = fh.read().decode(errors="replace")
            error = PortInUseError if "address already in use" in this_run.lower() else ServerStartError
            raise error(
                f"{self.name} on {self.host}:{self.port} did not start: {exc}\n"
                f"--- {self.log_path} (tail) ---\n{process.log_tail()}"
            ) from exc

    def stop(self, timeout: float = 5) -> None:
        """Stop the server (SIGTERM, then SIGKILL); its port is free again when this returns."""
        if self._process is None:
            return
        self._process.stop(timeout)
        self._process = None

    def kill9(self) -> None:
        """SIGKILL the server (a crash, for chaos tests)."""
        if self._process is not None:
            self._process.kill9()
            self._process = None

    def restart(self) -> None:
        """Stop and start again on the same port (clients see a disconnect, as on a broker restart)."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
