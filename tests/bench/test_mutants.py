"""The mutation runner itself: it must kill what a test catches and report what no test catches."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from bench.mutants import (
    MODULE_TESTS,
    REPO,
    Equivalent,
    RunError,
    _pytest,
    generate,
    read_equivalents,
    render_report,
    run_module,
)

TINY = textwrap.dedent(
    '''
    """Docstring: never mutated."""


    def clamp(value: int, limit: int) -> int:
        """Docstring: never mutated."""
        if value > limit:
            raise ValueError("message: never mutated")
        return value


    def label(value: int) -> str:
        return "big" if value >= 10 else "small"
    '''
)
# Checks clamp fully, label not at all: every mutant of label survives.
TINY_TEST = textwrap.dedent(
    """
    import pytest

    from tiny import clamp


    def test_clamp() -> None:
        assert clamp(3, 3) == 3
        with pytest.raises(ValueError):
            clamp(4, 3)
    """
)


def test_generate_skips_docstrings_messages_and_pragma_lines() -> None:
    described = 'PORT = Field(8883, description="for humans")\n'
    mutants = generate(TINY + described + "LIMIT = 5  # pragma: no mutate\n", "tiny.py")
    shown = {(m.original, m.mutated) for m in mutants}
    assert ("value > limit", "value <= limit") in shown  # flipped comparison
    assert ("value > limit", "value >= limit") in shown  # boundary moved
    assert ("value > limit", "not value > limit") in shown  # negated condition
    assert ("return value", "return None") in shown
    assert ('raise ValueError("message: never mutated")', "pass") in shown  # statement deleted
    assert ('"big"', "'bigXX'") in shown and ("10", "11") in shown  # constants changed
    texts = " ".join(f"{m.original} {m.mutated}" for m in mutants)
    assert "Docstring" not in texts and "message: neverXX" not in texts and "LIMIT" not in texts
    assert ("8883", "8884") in shown and "humansXX" not in texts  # a value, not its description
    assert all(m.source != TINY for m in mutants)


def test_runner_kills_what_a_test_catches_and_reports_survivors(tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(TINY)
    (tmp_path / "test_tiny.py").write_text(TINY_TEST)
    result = run_module(tmp_path, "tiny.py", ["test_tiny.py"], timeout=60, progress=lambda _: None)
    survived = {(s["original"], s["mutated"]) for s in result.survivors}
    assert ("value > limit", "value <= limit") not in survived  # killed by test_clamp
    assert ("return value", "return None") not in survived
    assert ('"big"', "'bigXX'") in survived  # nothing tests label()
    assert {int(str(s["line"])) for s in result.survivors} == {13}
    assert result.killed + result.timeouts + len(result.survivors) == result.mutants
    assert result.killed >= 5
    assert (tmp_path / "tiny.py").read_text() == TINY  # the original is never touched


def test_report_keeps_equivalent_notes_only_while_the_survivor_exists(tmp_path: Path) -> None:
    survivor = {"line": 14, "kind": "constant", "original": "10", "mutated": "11"}
    results: dict[str, dict[str, object]] = {
        "tiny.py": {"tests": ["test_tiny.py"], "mutants": 20, "killed": 19, "timeouts": 0,
                    "survivors": [survivor], "seconds": 1.0, "commit": "abc", "date": "2026-01-01"}
    }
    notes = [Equivalent("tiny.py", 13, "10", "11", "moved line, same mutant: kept"),
             Equivalent("tiny.py", 13, "9", "10", "no such survivor: dropped")]
    report = tmp_path / "MUTANTS.md"
    report.write_text(render_report(results, notes))
    kept = read_equivalents(report)
    assert kept == [Equivalent("tiny.py", 14, "10", "11", "moved line, same mutant: kept")]
    text = report.read_text()
    assert "| `tiny.py` | `test_tiny.py` | 20 | 19 | 0 | 1 | 1 | 100.0% | 95.0% |" in text
    assert "- `tiny.py:14` [constant] `10` → `11`: equivalent (see below)" in text
    json.dumps(results)  # what docs/mutants.json stores


def test_tests_failing_before_any_mutation_are_reported_not_scored(tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(TINY)
    (tmp_path / "test_tiny.py").write_text(TINY_TEST.replace("clamp(3, 3) == 3", "clamp(3, 3) == 4"))
    with pytest.raises(RunError, match="do not pass unmutated"):
        run_module(tmp_path, "tiny.py", ["test_tiny.py"], timeout=60, progress=lambda _: None)


def test_every_mapped_module_and_test_file_exists() -> None:
    """A renamed or removed file must fail here, not silently drop out of (or crash) a mutation run."""
    paths = [p for module, tests in MODULE_TESTS.items() for p in (module, *tests)]
    missing = [p for p in paths if not (REPO / p).is_file()]
    assert missing == []
    assert all(t.startswith("tests/") and t.endswith(".py") for tests in MODULE_TESTS.values() for t in tests)


def test_a_timed_out_run_leaves_no_server_behind(tmp_path: Path) -> None:
    """A mutant that hangs the tests is killed; a server they started in a session of its own (as
    sandbox.procs.ManagedProcess starts Mosquitto) must go with it: its fixture never runs."""
    pid_file = tmp_path / "server.pid"
    (tmp_path / "test_hang.py").write_text(textwrap.dedent(f"""
        import subprocess, time

        def test_hangs() -> None:
            server = subprocess.Popen(["sleep", "600"], start_new_session=True)
            open({str(pid_file)!r}, "w").write(str(server.pid))
            time.sleep(600)
    """))
    status, _ = _pytest(tmp_path, ["test_hang.py"], timeout=5)
    assert status == "timeout"
    server = int(pid_file.read_text())
    try:
        os.kill(server, 0)
    except ProcessLookupError:
        return  # gone, as it must be
    stat = Path(f"/proc/{server}/stat").read_text()
    os.kill(server, 9)  # never leave it running, even when the assertion below fails
    assert stat.rsplit(")", 1)[1].split()[0] == "Z", "the server outlived the timed-out run"
