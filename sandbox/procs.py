"""Child processes that cannot be left behind.

Every `ManagedProcess` runs in its own session and process group, so stopping it signals the whole
group (a server's workers or a shell's children go with it). Running processes are kept in a
module-level registry; `stop_all()` is registered with `atexit`, and `exit_on_sigterm()` lets a
long-running parent (the demo) turn SIGTERM into a normal exit that runs it too. Ctrl-C raises
`KeyboardInterrupt` in the parent, which also ends in `atexit`. Only a SIGKILL of the parent itself
can orphan children: nothing in-process can run then.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

_registry: dict[int, ManagedProcess] = {}
_registry_lock = threading.Lock()


class ProcessError(RuntimeError):
    """A managed process could not be started or exited when it should have kept running."""


class ManagedProcess:
    """One child process in its own process group, its stdout+stderr appended to `log_path`.

    `env` entries are added to (and override) the parent's environment, a None value removes that
    variable; `cwd` defaults to the parent's working directory.
    """

    def __init__(
        self,
        args: Sequence[str | os.PathLike[str]],
        log_path: Path,
        env: Mapping[str, str | None] | None = None,
        cwd: Path | None = None,
    ) -> None:
        if not args:
            raise ValueError("args must name the program to run")
        self.args = [os.fspath(a) for a in args]
        self.log_path = Path(log_path)
        self.env = dict(env or {})
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"ManagedProcess({self.args[0]!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        """The child's pid (also its process group id), or None before `start()`."""
        return self._popen.pid if self._popen else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status once the process ended (negative: killed by that signal), else None."""
        return self._popen.poll() if self._popen else None

    def child_env(self) -> dict[str, str]:
        """The environment the child gets: ours, overlaid with `env` (None values removed)."""
        merged: dict[str, str | None] = {**os.environ, **self.env}
        return {k: v for k, v in merged.items() if v is not None}

    def start(self) -> ManagedProcess:
        """Start the process; raises `ProcessError` if it is already running or cannot be executed."""
        if self.running:
            raise ProcessError(f"{self!r} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            try:
                self._popen = subprocess.Popen(
                    self.args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.child_env(),
                    cwd=self.cwd,
                    start_new_session=True,  # own session + process group: we signal the group
                )
            except OSError as exc:
                raise ProcessError(f"cannot start {self.args[0]}: {exc}") from exc
        with _registry_lock:
            _registry[self._popen.pid] = self
        return self

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit and return its exit status."""
        if self._popen is None:
            raise ProcessError("process was never started")
        code = self._popen.wait(timeout)
        self._forget()
        return code

    def stop(self, timeout: float = 5) -> int | None:
        """SIGTERM the process group, then SIGKILL it if the leader has not exited after `timeout` s.

        The group is SIGKILLed in any case at the end so that no child of the leader survives it.
        Returns the exit status (None if never started). Safe to call twice.
        """
        if self._popen is None:
            return None
        if self._popen.returncode is None:
            self._signal_group(signal.SIGTERM)
            self._wait_exit_unreaped(timeout)
        # The leader is a zombie now (or still running): its pid cannot have been reused as the group id.
        self._signal_group(signal.SIGKILL)
        code = self._popen.wait()
        self._forget()
        return code

    def kill9(self) -> int | None:
        """SIGKILL the whole group at once (a power cut, for chaos tests); returns the exit status."""
        if self._popen is None:
            return None
        self._signal_group(signal.SIGKILL)
        code = self._popen.wait()
        self._forget()
        return code

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_exit_unreaped(self, timeout: float) -> None:
        """Wait up to `timeout` s for the leader to exit, without reaping it (waitid WNOWAIT)."""
        assert self._popen is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.waitid(os.P_PID, self._popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                    return
            except ChildProcessError:  # already reaped
                return
            time.sleep(0.02)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._popen is not None
        with contextlib.suppress(ProcessLookupError):  # the whole group has already exited
            os.killpg(self._popen.pid, sig)

    def _forget(self) -> None:
        if self._popen is not None:
            with _registry_lock:
                _registry.pop(self._popen.pid, None)


def running_processes() -> list[ManagedProcess]:
    """Every managed process started by this interpreter and not yet stopped."""
    with _registry_lock:
        return [p for p in _registry.values() if p.running]


def stop_all(timeout: float = 5) -> None:
    """Stop every registered process (most recently started first: clients before servers)."""
    with _registry_lock:
        procs = list(_registry.values())
    for proc in reversed(procs):
        proc.stop(timeout)


def exit_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit in the main thread, so `atexit` (and `finally`) stop children."""

    def _handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _handler)


atexit.register(stop_all)
