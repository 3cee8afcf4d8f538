"""A private Docker engine (Debian's `dockerd`) for tests: started and stopped by the tests, by PID.

Everything the engine owns lives in one fresh temp folder: data root, exec root (with the containerd
it starts), pid file, its unix socket and an empty daemon config, so it never reads `/etc/docker`,
never touches `/var/lib/docker` and never talks to another engine's socket on the machine. It runs
with `--iptables=false --ip-forward=false --bridge=none`: no firewall rules, no `docker0` bridge, no
address on the host. Containers therefore use the host network (`network_mode="host"`) and bind
127.0.0.1 only, like every other sandbox server; builds use `--network host` so `pip` reaches the
package registry as the host does.

The `docker` CLI used here is Debian's (`/usr/bin/docker`, package `docker.io`), called with
`DOCKER_HOST` set to this engine and `DOCKER_CONFIG` set to a private folder, so no other engine and no
stored registry credentials are ever used.

Stopping removes every container through the API, then SIGTERMs `dockerd` (which stops containerd),
then kills by PID any containerd or shim process that still names this engine's exec root, and
removes the folder only when nothing is mounted under it any more.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import docker

from sandbox.procs import ManagedProcess

DOCKERD = "/usr/sbin/dockerd"
DOCKER_CLI = "/usr/bin/docker"  # Debian's docker.io client, never whatever `docker` is first on PATH
DEBIAN_PACKAGE = "docker.io"
START_TIMEOUT = 90.0  # 2 shared cores: containerd + dockerd start can take a while
STOP_TIMEOUT = 60.0


class DockerEngineError(RuntimeError):
    """The private engine could not be started or used; the message carries dockerd's log tail."""


class DockerEngine:
    """`dockerd` in its own temp folder. `start()`, then `.client` (docker-py) or `.cli(...)`."""

    def __init__(self, parent: Path | None = None) -> None:
        # A short path: the socket path must fit in sun_path (108 bytes), containerd's too.
        self.root = Path(tempfile.mkdtemp(prefix="pm500-dockerd-", dir=parent))
        self.data_root = self.root / "data"
        self.exec_root = self.root / "exec"
        self.pidfile = self.root / "dockerd.pid"
        self.socket = self.root / "docker.sock"
        self.config_file = self.root / "daemon.json"
        self.cli_config = self.root / "cli"
        self.log_path = self.root / "dockerd.log"
        self.host = f"unix://{self.socket}"
        self._process: ManagedProcess | None = None
        self._client: docker.DockerClient | None = None

    # --- life cycle -----------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            DOCKERD,
            "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "--config-file", str(self.config_file),
            "-H", self.host,
        ]

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        if not Path(DOCKERD).exists():
            raise DockerEngineError(f"{DOCKERD} not found: install Debian's {DEBIAN_PACKAGE} (./dev setup)")
        if os.geteuid() != 0:
            raise DockerEngineError("dockerd needs root: run the Docker tests as root (as CI does)")
        for folder in (self.data_root, self.exec_root, self.cli_config):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.config_file.write_text("{}\n")
        (self.cli_config / "config.json").write_text("{}\n")  # no stored registry credentials
        self._process = ManagedProcess(self.command(), self.log_path, cwd=self.root).start()
        deadline = time.monotonic() + timeout
        while True:
            if not self._process.running:
                raise DockerEngineError(f"dockerd exited ({self._process.returncode}):\n{self.log_tail()}")
            try:
                client = docker.DockerClient(base_url=self.host, timeout=120)
                client.ping()
                self._client = client
                return self
            except Exception:  # not listening yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise DockerEngineError(
                        f"dockerd not answering after {timeout:g}s:\n{self.log_tail()}") from None
                time.sleep(0.3)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            raise DockerEngineError("engine not started")
        return self._client

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        """Remove containers, stop dockerd, then containerd and shims left behind; remove the folder."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                for container in self._client.containers.list(all=True):
                    with contextlib.suppress(Exception):
                        container.remove(force=True)
            self._client.close()
            self._client = None
        if self._process is not None:
            self._process.stop(timeout=STOP_TIMEOUT)
            self._process = None
        for pid in self._leftover_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        remove_unless_mounted(self.root)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    # --- the CLI, as a user types it ------------------------------------------------------------

    def cli_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.cli_config))
        return env

    def cli(self, args: Sequence[str], *, cwd: Path | None = None, check: bool = True,
            input_bytes: bytes | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """`docker <args>` against this engine; raises `DockerEngineError` with its output on failure."""
        result = subprocess.run(
            [DOCKER_CLI, *args], cwd=cwd, env=self.cli_env(), capture_output=True, check=False,
            input=input_bytes, timeout=timeout,
        )
        done = subprocess.CompletedProcess(result.args, result.returncode,
                                           result.stdout.decode(errors="replace"),
                                           result.stderr.decode(errors="replace"))
        if check and done.returncode != 0:
            raise DockerEngineError(f"docker {' '.join(args)} exited {done.returncode}:\n"
                                    f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def inspect(self, container: str) -> dict[str, Any]:
        data: dict[str, Any] = self.client.api.inspect_container(container)
        return data

    # --- cleanup helpers ------------------------------------------------------------------------

    def _leftover_pids(self) -> list[int]:
        """containerd/shim processes started for this engine: their command line names our exec root."""
        mine = str(self.exec_root).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if mine in cmdline:
                pids.append(int(entry.name))
        return pids


def mounts_under(root: Path) -> list[str]:
    """Mount points below `root` (from /proc/self/mountinfo), deepest first."""
    prefix = str(root) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def remove_unless_mounted(root: Path) -> bool:
    """Unmount what is left below `root`, then delete it, but never while anything is still mounted:
    a recursive delete would walk into the mount (a bind-mounted /dev or host folder) and empty it.
    Returns whether `root` was removed."""
    for point in mounts_under(root):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    if mounts_under(root):
        return False
    shutil.rmtree(root, ignore_errors=True)
    return True


def image_size(engine: DockerEngine, reference: str) -> int:
    """Size in bytes of an image as `docker image inspect` reports it (all layers, uncompressed)."""
    return int(json.loads(engine.cli(["image", "inspect", "--format", "{{json .Size}}", reference]).stdout))
