"""The local demo end to end, run as a newcomer runs it: README command one, then the data it left.

Each run brings up the real pieces (moto, Mosquitto, InfluxDB, the simulators, the CLI, the collector),
so these tests are slow; they share one work directory per test and check, after the demo exited,
its exit status, what landed in InfluxDB (by starting InfluxDB again on the demo's data directory)
and that no process the demo started is left.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from collector.lineprotocol import MEASUREMENT
from demo.run import SUMMARY_PREFIX, pid_alive
from demo.workdir import REPO_ROOT
from sandbox.influx import InfluxServer

pytestmark = pytest.mark.slow

DURATION_S = "20"
RUN_TIMEOUT_S = 300  # a hung demo fails the test instead of hanging CI; not a performance threshold
DEMO = [sys.executable, "-m", "demo"]


def readme_command_one() -> list[str]:
    """The first command of the README's first fenced shell block (comments stripped)."""
    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh|shell)?\n(.*?)```", text, re.S)
    assert block, "README.md has no fenced command block"
    first = next(line for line in block.group(1).splitlines() if line.strip())
    return shlex.split(first, comments=True)


def run_demo(command: list[str], workdir: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run([*command, "--workdir", str(workdir), *extra], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S, check=False)
    return done.returncode, _summary(done.stdout), done.stdout + done.stderr


def stop(demo: subprocess.Popen[str]) -> None:
    """A demo still running after a failed assertion: Ctrl-C, so it stops the servers it started (a
    SIGKILL would leave them running: each runs in a process group of its own); SIGKILL only if it hangs."""
    if demo.poll() is not None:
        return
    demo.send_signal(signal.SIGINT)
    try:
        demo.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        demo.kill()
        demo.wait()


def _summary(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith(SUMMARY_PREFIX)]
    assert lines, f"no summary line in the demo's output:\n{stdout[-3000:]}"
    summary: dict[str, Any] = json.loads(lines[-1].removeprefix(SUMMARY_PREFIX))
    return summary


def processes_started_by(summary: dict[str, Any], workdir: Path) -> list[str]:
    """Live processes the demo started: its recorded pids, and anything whose command line or working
    directory is inside its work directory (catches a child it forgot to record)."""
    alive = [f"{name} ({pid})" for name, pid in summary["pids"].items() if pid_alive(pid)]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid() or not pid_alive(int(entry.name)):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(workdir) in cmdline or cwd.startswith(str(workdir)):
            alive.append(f"{cmdline.strip()} ({entry.name})")
    return alive


def influx_points(summary: dict[str, Any], workdir: Path) -> dict[str, list[dict[str, Any]]]:
    """Start InfluxDB again on the demo's data directory and read back the `total` rows per asset."""
    data_dir = Path(summary["influx"]["data_dir"])
    assert data_dir.is_relative_to(workdir)
    with InfluxServer(data_dir) as influx:
        rows = influx.points(MEASUREMENT, summary["influx"]["database"], where="\"phase\" = 'total'")
    per_asset: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        per_asset.setdefault(row["asset"], []).append(row)
    return per_asset


def test_readme_command_one_is_the_demo():
    assert readme_command_one() == ["./dev", "demo"]


def test_readme_demo_command_moves_data_end_to_end_and_a_second_run_starts_from_scratch(tmp_path):
    workdir = tmp_path / "demo"
    code, summary, output = run_demo(readme_command_one(), workdir, "--duration", DURATION_S)

    assert code == 0, output[-4000:]
    assert summary["ok"] and summary["failures"] == []
    assert processes_started_by(summary, workdir) == []
    assets = summary["assets"]
    assert sorted(assets) == ["meter-1", "meter-2"]  # Pulumi.local.yaml's two meters
    assert all(a["mqtt_messages"] > 0 and a["influx_points"] > 0 for a in assets.values()), assets
    rows = influx_points(summary, workdir)
    assert sorted(rows) == ["meter-1", "meter-2"]
    for asset, asset_rows in rows.items():
        assert {r["site"] for r in asset_rows} == {"demo-site"}
        assert {r["breaker"] for r in asset_rows} == {f"Demo feeder {asset[-1]}"}
        assert all(r["kW"] is not None and r["frequency"] > 0 for r in asset_rows)
    bundle = (workdir / "bundle" / "config.yaml").read_text()
    assert "thing_name: local:demo-site:edge-01" in bundle

    # Second run in the same folder, this time without meters: it must start cleanly from scratch
    # (new CA, new certificate, new bundle, empty InfluxDB) and fail the flow check, naming the leg.
    code, summary, output = run_demo(DEMO, workdir, "--duration", "8", "--without", "meters")
    assert code == 1, output[-4000:]
    assert not summary["ok"]
    assert any(f.startswith("meters -> collector") for f in summary["failures"]), summary["failures"]
    assert "✗ leg failed meters -> collector" in output
    assert processes_started_by(summary, workdir) == []
    assert influx_points(summary, workdir) == {}  # the first run's points went with its folder


def test_without_influxdb_the_influx_leg_fails_and_mqtt_still_flows(tmp_path):
    workdir = tmp_path / "demo"
    code, summary, output = run_demo(DEMO, workdir, "--duration", "10", "--without", "influxdb")
    assert code == 1, output[-4000:]
    assert [f.split(":")[0] for f in summary["failures"]] == ["collector -> InfluxDB (line protocol)"]
    assert all(a["mqtt_messages"] > 0 for a in summary["assets"].values())
    assert processes_started_by(summary, workdir) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_stops_every_process_the_demo_started(tmp_path, sig):
    """The signal goes to the pid of README command one, as Ctrl-C or `kill` would send it."""
    workdir = tmp_path / "demo"
    demo = subprocess.Popen([*readme_command_one(), "--workdir", str(workdir)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert demo.stdout is not None
    output = []
    try:
        for line in demo.stdout:  # without a terminal the demo prints a status line every few seconds
            output.append(line)
            if re.search(r"meter-1: mqtt=[1-9]", line):
                break
        else:
            pytest.fail("demo ended before data flowed:\n" + "".join(output)[-4000:])
        demo.send_signal(sig)
        rest, _ = demo.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        stop(demo)
    output.append(rest)
    text = "".join(output)
    assert demo.returncode == 0, text[-4000:]
    summary = _summary(text)
    assert summary["reason"] == f"stopped by {signal.Signals(sig).name}"
    # An interactive run ends with Ctrl-C: the summary reports what flowed until then.
    assert summary["ok"] is True and summary["failures"] == []
    assert sorted(summary["assets"]) == ["meter-1", "meter-2"]
    assert summary["assets"]["meter-1"]["mqtt_messages"] > 0
    assert summary["births"] >= 3  # NBIRTH + a DBIRTH per meter: the observer subscribed first
    assert "✓ data flowed end to end" in text
    assert len(summary["pids"]) == 5  # influxd, mosquitto, two meters, the collector
    assert processes_started_by(summary, workdir) == []


def test_a_foreign_workdir_is_refused_untouched_and_nothing_starts(tmp_path):
    (tmp_path / "notes.txt").write_text("not the demo's")
    done = subprocess.run([*DEMO, "--workdir", str(tmp_path), "--duration", "5"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 2
    assert "not a previous demo folder" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def documented_sparkplug_command() -> list[str]:
    """The `--encoding sparkplug-b` command exactly as docs/demo.md shows it (comment stripped)."""
    text = (REPO_ROOT / "docs" / "demo.md").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("./dev demo --encoding sparkplug-b"))
    return shlex.split(line, comments=True)


def test_documented_sparkplug_demo_moves_the_same_data_and_its_rebirth_command_works(tmp_path):
    """The documented command, with its Primary Host Application; the printed rebirth command, pasted
    as a user would, makes the collector publish a new NBIRTH that the host receives."""
    command = documented_sparkplug_command()
    assert command[:4] == ["./dev", "demo", "--encoding", "sparkplug-b"]
    workdir = tmp_path / "demo"
    # `./dev demo` is `python -m demo` after setup (test_readme_command_one covers that entry point).
    demo = subprocess.Popen([*DEMO, *command[2:4], "--workdir", str(workdir)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert demo.stdout is not None
    output: list[str] = []
    host_log = workdir / "logs" / "host.log"
    try:
        rebirth = None
        for line in demo.stdout:
            output.append(line)
            if line.startswith("mosquitto_pub ") and "/NCMD/" in line:
                rebirth = line.strip()
            if rebirth and re.search(r"meter-2: mqtt=[1-9]", line):
                break
        else:
            pytest.fail("demo ended before data flowed:\n" + "".join(output)[-4000:])
        # One NBIRTH per collector start: the first, and the one after the fleet tour's kill -9.
        births_before = host_log.read_text().count("NBIRTH local:demo-site:edge-01")
        assert births_before == 2
        pasted = subprocess.run(rebirth, shell=True, cwd=REPO_ROOT, capture_output=True, text=True,  # noqa: S602
                                timeout=60, check=False)
        assert pasted.returncode == 0, pasted.stderr
        for line in demo.stdout:  # a status line every few seconds (wrapped at 80 columns)
            output.append(line)
            counted = re.findall(r"births/deaths\s+at\s+broker:\s+(\d+)/", "".join(output[-3:]))
            if counted and int(counted[-1]) >= 3 * (births_before + 1):  # NBIRTH + a DBIRTH per meter
                break
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        stop(demo)
    text = "".join(output) + rest
    assert demo.returncode == 0, text[-4000:]
    summary = _summary(text)
    assert summary["ok"] and summary["encoding"] == "sparkplug-b"
    host_lines = host_log.read_text()
    assert host_lines.count("NBIRTH local:demo-site:edge-01") == births_before + 1, host_lines[-3000:]
    assert summary["births"] >= 3 * (births_before + 1)  # NBIRTH + a DBIRTH per meter, each time
    bundle = (workdir / "bundle" / "config.yaml").read_text()
    assert "encoding: sparkplug-b" in bundle and "primary_host_id: pm500-demo-host" in bundle
    assets = summary["assets"]
    assert all(a["mqtt_messages"] > 0 and a["influx_points"] > 0 for a in assets.values()), assets
    rows = influx_points(summary, workdir)
    assert sorted(rows) == ["meter-1", "meter-2"]  # InfluxDB gets the same rows as in json mode
    for asset, asset_rows in rows.items():
        assert {r["breaker"] for r in asset_rows} == {f"Demo feeder {asset[-1]}"}
        assert all(r["kW"] is not None and r["frequency"] > 0 for r in asset_rows)
    assert "primary host" in summary["pids"]
    assert processes_started_by(summary, workdir) == []
