"""Ctrl-C and SIGTERM: stop the demo once, then let the teardown finish undisturbed.

The first SIGINT/SIGTERM/SIGHUP raises `Shutdown` in the main thread, which unwinds into the teardown that
stops every process the demo started. From then on (and during any teardown) further signals are only
noted: a second Ctrl-C must not abandon the teardown halfway and leave a broker or database running.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# SIGHUP: the terminal was closed. Its default action would end the demo without any teardown.
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Shutdown(Exception):
    """A stop signal arrived; carries the signal's name for the console."""

    def __init__(self, signum: int) -> None:
        self.signame = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signame}")


class SignalGuard:
    """Turns the first stop signal into `Shutdown`; ignores the rest while `shielded()`."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self._armed = True
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum).name)
        if self._armed:
            self._armed = False
            raise Shutdown(signum)

    def install(self) -> None:
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """No `Shutdown` inside: used around the teardown."""
        self._armed = False
        yield


@contextmanager
def stop_signals() -> Iterator[SignalGuard]:
    guard = SignalGuard()
    guard.install()
    try:
        yield guard
    finally:
        guard.restore()
