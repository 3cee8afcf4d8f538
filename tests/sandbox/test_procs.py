import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sandbox.procs import ManagedProcess, ProcessError, running_processes


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _all_gone(pids: list[int], timeout: float = 30) -> bool:
    """True once none of `pids` is alive (SIGKILL is delivered asynchronously to orphans)."""
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _wait_file(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} was never written")


def _family(tmp_path: Path, *, ignore_term: bool = False) -> tuple[ManagedProcess, list[int]]:
    """A shell that starts a background grandchild, both pids written to a file."""
    pids = tmp_path / "pids"
    trap = "trap '' TERM; " if ignore_term else ""
    script = f"{trap}sleep 300 & echo $$ $! > {pids}; echo started; wait"
    proc = ManagedProcess(["sh", "-c", script], tmp_path / "family.log").start()
    return proc, [int(p) for p in _wait_file(pids).split()]


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    proc, pids = _family(tmp_path)
    assert proc.running and proc in running_processes()
    assert proc.pid == pids[0] == os.getpgid(pids[1])  # own group, grandchild included
    assert os.getpgid(proc.pid) != os.getpgid(0)
    proc.stop(timeout=10)
    assert not proc.running and proc not in running_processes()
    assert _all_gone(pids)
    assert "started" in proc.log_tail()


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    proc, pids = _family(tmp_path, ignore_term=True)
    assert proc.stop(timeout=0.5) == -signal.SIGKILL
    assert _all_gone(pids)


def test_kill9_is_immediate(tmp_path: Path) -> None:
    proc, pids = _family(tmp_path)
    assert proc.kill9() == -signal.SIGKILL
    assert _all_gone(pids)
    assert proc.stop() == -signal.SIGKILL  # idempotent


def test_env_overlay_and_removal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PM500_DROP_ME", "x")
    proc = ManagedProcess(
        ["sh", "-c", 'echo "add=$PM500_ADDED drop=${PM500_DROP_ME-unset}"; pwd'],
        tmp_path / "env.log", env={"PM500_ADDED": "yes", "PM500_DROP_ME": None}, cwd=tmp_path,
    ).start()
    assert proc.wait(timeout=30) == 0
    assert proc.log_tail().splitlines() == ["add=yes drop=unset", str(tmp_path)]


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="no-such-program-pm500"):
        ManagedProcess(["no-such-program-pm500"], tmp_path / "x.log").start()
    proc = ManagedProcess(["sleep", "30"], tmp_path / "y.log").start()
    try:
        with pytest.raises(ProcessError, match="already running"):
            proc.start()
    finally:
        proc.stop()


@pytest.mark.parametrize("ending", ["return", "sigterm", "keyboardinterrupt"])
def test_parent_exit_leaves_no_stray(tmp_path: Path, ending: str) -> None:
    """A parent that returns, gets SIGTERM (with exit_on_sigterm) or Ctrl-C takes its children along."""
    pids = tmp_path / "pids"
    parent = textwrap.dedent(f"""
        import os, signal, sys, time
        from pathlib import Path
        from sandbox.procs import ManagedProcess, exit_on_sigterm
        exit_on_sigterm()
        procs = [ManagedProcess(["sleep", "300"], Path({str(tmp_path)!r}) / f"c{{i}}.log").start()
                 for i in range(3)]
        Path({str(pids)!r}).write_text(" ".join(str(p.pid) for p in procs))
        if {ending!r} == "keyboardinterrupt":
            raise KeyboardInterrupt
        if {ending!r} == "sigterm":
            time.sleep(300)
    """)
    run = subprocess.Popen([sys.executable, "-c", parent], stderr=subprocess.PIPE)
    children = [int(p) for p in _wait_file(pids).split()]
    if ending == "sigterm":
        assert all(_alive(p) for p in children)
        run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    expected = {"return": 0, "sigterm": 128 + signal.SIGTERM, "keyboardinterrupt": -signal.SIGINT}
    assert run.returncode == expected[ending]
    assert _all_gone(children), err.decode()
