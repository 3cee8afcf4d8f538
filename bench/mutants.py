"""Mutation testing of the contract modules: would a test fail if the code were wrong?

`./dev mutants [MODULE ...]` (CPU heavy: run it when the machine is otherwise idle).

Our own small runner rather than mutmut/cosmic-ray: many of our tests start the collector, the CLI or
the simulator as subprocesses, which must import the *mutated* file. So each run copies the repository
(tracked and untracked, not ignored, files) to a scratch directory, puts that copy first on PYTHONPATH,
and rewrites the module there in place, one mutant at a time; the worktree itself is never touched.

Mutations (one AST change each): comparisons flipped (negated, or the boundary moved), conditions
negated and `and`/`or` swapped, constants changed (numbers +1, booleans flipped, strings altered),
statements inside functions deleted, returned values replaced by None. Docstrings, annotations and
message texts (inside `raise` and logging calls, `description=` and `help=` arguments) are not
mutated; nor is a line marked `# pragma: no mutate`.

Each mutant runs only the tests listed for its module in MODULE_TESTS (fast unit tests first, `-x`),
with a timeout derived from the unmutated run. The results of each module go to `docs/mutants.json`,
from which `docs/MUTANTS.md` is regenerated: the score per module and every survivor with file:line and
the mutation. Survivors explained by hand as equivalent (a section of MUTANTS.md) keep their
explanation as long as a survivor with the same file, original and mutated text still exists.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import datetime as dt
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "mutants.json"
REPORT = REPO / "docs" / "MUTANTS.md"
GOAL = 0.95

# Module -> the tests that guard it, fastest first (pytest stops at the first failure).
MODULE_TESTS: dict[str, list[str]] = {
    "infra/naming.py": ["tests/contracts/test_naming.py", "tests/infra/test_aws_names.py"],
    "collector/backoff.py": ["tests/collector/test_backoff.py"],
    "collector/topics.py": ["tests/contracts/test_topics.py"],
    "collector/payload.py": [
        "tests/contracts/test_payload.py",
        "tests/collector/test_alarms.py",
        "tests/collector/test_buffer_identity.py",
        "tests/collector/test_bad_values.py",
    ],
    "collector/lineprotocol.py": [
        "tests/contracts/test_lineprotocol.py",
        "tests/collector/test_bad_values.py",
        "tests/collector/test_label_escaping.py",
    ],
    "devices/crypto.py": ["tests/cli/test_crypto.py", "tests/cli/test_root_ca.py"],
    "collector/registers.py": ["tests/meter/test_registers.py"],
    "collector/buffer.py": [
        "tests/collector/test_buffer.py",
        "tests/collector/test_buffer_identity.py",
        "tests/collector/test_event_queue.py",
    ],
    "collector/quality.py": ["tests/collector/test_bad_values.py"],
    "collector/cip_multiple.py": ["tests/meter/test_cip_multiple.py", "tests/meter/test_driver.py"],
    "collector/assembly_reader.py": ["tests/meter/test_driver.py", "tests/meter/test_poller.py"],
    "collector/settings.py": ["tests/collector/test_settings.py"],
    "collector/sink_errors.py": [
        "tests/collector/test_sink_error_kinds.py",
        "tests/collector/test_sink_errors.py",
    ],
    "collector/event_queue.py": ["tests/collector/test_event_queue.py"],
    "collector/alarms.py": ["tests/collector/test_alarms.py", "tests/collector/test_event_queue.py"],
    "devices/fleet.py": ["tests/cli/test_fleet_functions.py", "tests/cli/test_fleet_commands.py"],
    "collector/sparkplug_b.py": ["tests/collector/test_sparkplug_proto.py"],
    "collector/config.py": [
        "tests/contracts/test_collector_config.py",
        "tests/collector/test_bundle_files.py",
        "tests/collector/test_small_defects.py",
        "tests/collector/test_operations.py",
    ],
}

NO_MUTATE = "pragma: no mutate"
_LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
_TEXT_KEYWORDS = {"description", "help"}
_NEGATED: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE,
    ast.LtE: ast.Gt, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
_BOUNDARY: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
}


class RunError(Exception):
    """A module could not be mutation-tested (its tests fail unmutated, collect nothing, ...)."""


@dataclass(frozen=True)
class Mutant:
    """One mutation; (file, original, mutated) identifies it across runs, line locates it."""

    file: str
    line: int
    kind: str
    original: str
    mutated: str
    source: str = field(repr=False, compare=False)


# --------------------------------------------------------------------------------------------------
# Generating mutants


def _one_line(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _message_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes whose text is a message for humans: raise statements and logging calls."""
    skip: set[int] = set()

    def mark(node: ast.AST) -> None:
        skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.Raise):
            mark(node)
            skip.discard(id(node))  # the message is left alone; deleting the raise is a mutation
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _LOG_METHODS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in {"log", "logger", "logging"}
        ):
            mark(node)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                mark(body[0])  # docstring
            if not isinstance(node, ast.ClassDef | ast.Module):
                for a in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
                    if a.annotation is not None:
                        mark(a.annotation)
                if node.returns is not None:
                    mark(node.returns)
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, ast.Call):
            for keyword in node.keywords:  # schema descriptions and CLI help: texts for humans
                if keyword.arg in _TEXT_KEYWORDS and isinstance(keyword.value, ast.Constant | ast.JoinedStr):
                    mark(keyword.value)
    return skip


def _changed_constant(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "XX" if value else "XX"
    if isinstance(value, bytes):
        return value + b"XX"
    return _UNCHANGED


_UNCHANGED = object()
Edit = Callable[[], Callable[[], None]]  # applies a change in place, returns the undo


def _edits(tree: ast.Module, skip: set[int]) -> Iterator[tuple[str, ast.AST, ast.AST | None, Edit]]:
    """(kind, node shown as original, node shown as mutated or None for `pass`, edit) per mutation."""
    parents: dict[int, ast.AST] = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[id(child)] = parent
    in_function: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(n) for n in ast.walk(fn) if n is not fn)

    def set_attr(obj: object, name: str, value: object) -> Edit:
        def apply() -> Callable[[], None]:
            old = getattr(obj, name)
            setattr(obj, name, value)
            return lambda: setattr(obj, name, old)

        return apply

    def set_item(seq: list[object], index: int, value: object) -> Edit:
        def apply() -> Callable[[], None]:
            old = seq[index]
            seq[index] = value

            def undo() -> None:
                seq[index] = old

            return undo

        return apply

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                for table, kind in ((_NEGATED, "compare"), (_BOUNDARY, "boundary")):
                    if type(op) in table:
                        new = copy.deepcopy(node)
                        new.ops[i] = table[type(op)]()
                        yield kind, node, new, set_item(node.ops, i, table[type(op)]())  # type: ignore[arg-type]
        elif isinstance(node, ast.BoolOp):
            other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            new = copy.deepcopy(node)
            new.op = other
            yield "and/or", node, new, set_attr(node, "op", other)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            parent = parents[id(node)]
            yield "condition", node, node.operand, _replace_child(parent, node, node.operand)
        elif isinstance(node, ast.Constant) and not isinstance(
            parents.get(id(node)), ast.JoinedStr | ast.FormattedValue
        ):
            changed = _changed_constant(node.value)
            if changed is not _UNCHANGED and node.value is not None:
                yield "constant", node, ast.Constant(changed), set_attr(node, "value", changed)
        elif isinstance(node, ast.JoinedStr) and not isinstance(parents.get(id(node)), ast.FormattedValue):
            for i, part in enumerate(node.values):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    new = copy.deepcopy(node)
                    new.values[i] = ast.Constant(part.value + "XX")
                    yield "constant", node, new, set_item(node.values, i, ast.Constant(part.value + "XX"))  # type: ignore[arg-type]
        if isinstance(node, ast.If | ast.While | ast.IfExp) and id(node.test) not in skip:
            negated = ast.UnaryOp(ast.Not(), node.test)
            yield "condition", node.test, negated, set_attr(node, "test", negated)
        if isinstance(node, ast.comprehension):
            for i, cond in enumerate(node.ifs):
                negated = ast.UnaryOp(ast.Not(), cond)
                yield "condition", cond, negated, set_item(node.ifs, i, negated)  # type: ignore[arg-type]
        if isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None
        ):
            none = ast.Constant(None)
            yield "return None", node, ast.Return(none), set_attr(node, "value", none)
        if (
            isinstance(node, ast.stmt)
            and id(node) in in_function
            and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Pass)
            and not isinstance(node, ast.Import | ast.ImportFrom)
        ):
            yield "delete", node, None, _delete_statement(parents[id(node)], node)


def _replace_child(parent: ast.AST, old: ast.AST, new: ast.AST) -> Edit:
    def apply() -> Callable[[], None]:
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
                return lambda: setattr(parent, name, old)
            if isinstance(value, list) and any(v is old for v in value):
                i = next(i for i, v in enumerate(value) if v is old)
                value[i] = new

                def undo(lst: list[ast.AST] = value, i: int = i) -> None:
                    lst[i] = old

                return undo
        raise AssertionError("child not found")

    return apply


def _delete_statement(parent: ast.AST, stmt: ast.stmt) -> Edit:
    return _replace_child(parent, stmt, ast.Pass())


def generate(source: str, file: str) -> list[Mutant]:
    """Every mutant of `source` (the text of `file`), each with the complete mutated source."""
    tree = ast.parse(source)
    skip = _message_nodes(tree)
    lines = source.splitlines()
    no_mutate = {i + 1 for i, line in enumerate(lines) if NO_MUTATE in line}
    mutants: list[Mutant] = []
    seen: set[tuple[int, str, str]] = set()
    for kind, shown, replacement, edit in list(_edits(tree, skip)):
        line = getattr(shown, "lineno", 0)
        if line in no_mutate:
            continue
        original = _one_line(ast.get_source_segment(source, shown) or ast.unparse(shown))
        mutated = "pass" if replacement is None else _one_line(ast.unparse(replacement))
        if replacement is not None and ast.unparse(replacement) == ast.unparse(shown):
            continue
        undo = edit()
        try:
            text = ast.unparse(tree)
        finally:
            undo()
        key = (line, original, mutated)
        if key in seen:
            continue
        seen.add(key)
        mutants.append(Mutant(file, line, kind, original, mutated, text))
    return mutants


# --------------------------------------------------------------------------------------------------
# Running mutants


@dataclass
class ModuleResult:
    module: str
    tests: list[str]
    mutants: int
    killed: int
    timeouts: int
    survivors: list[dict[str, object]]
    seconds: float
    commit: str
    date: str

    @property
    def caught(self) -> int:
        return self.killed + self.timeouts


def _repo_files(root: Path) -> list[Path]:
    """Files of the checkout (tracked and untracked, not ignored); every file when not in git."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True, capture_output=True,
        ).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (subprocess.CalledProcessError, FileNotFoundError):
        names = [
            str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and ".venv" not in p.parts
        ]
    return [Path(n) for n in names if (root / n).is_file()]


def scratch_copy(root: Path, into: Path) -> None:
    for rel in _repo_files(root):
        (into / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, into / rel)


_PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts="]
# Run in a subprocess once: which modules collecting the tests imports (to preload them in the runner).
_LIST_IMPORTS = """
import json, os, sys, pytest
devnull = os.open(os.devnull, os.O_WRONLY)
saved = os.dup(1)
os.dup2(devnull, 1); os.dup2(devnull, 2)
pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *sys.argv[1:]])
os.dup2(saved, 1)
print(json.dumps(sorted(sys.modules)))
"""


def _project_packages(scratch: Path) -> set[str]:
    return {p.stem for p in scratch.iterdir() if (p / "__init__.py").exists() or p.suffix == ".py"}


def _preload(scratch: Path, tests: Sequence[str]) -> None:
    """Import, once, every third-party module the tests need: each forked mutant run then starts warm.

    Project modules are never preloaded: each mutant run imports them fresh from the scratch copy.
    """
    env = dict(os.environ, PYTHONPATH=str(scratch))
    done = subprocess.run([sys.executable, "-c", _LIST_IMPORTS, *tests], cwd=scratch, env=env,
                          capture_output=True, text=True)
    try:
        names = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return  # collection itself fails: the baseline run will say so
    project = _project_packages(scratch)
    for name in names:
        if name.split(".")[0] in project or name == "__main__" or name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception:  # noqa: S112 (an optional import of a plugin: the forked run imports it itself)
            continue


def _pytest(scratch: Path, tests: Sequence[str], timeout: float | None) -> tuple[str, float]:
    """Run the tests in the scratch copy: ("passed" | "failed" | "timeout" | "no tests", seconds).

    pytest runs in a fork of this (preloaded) process, in its own session so that a timeout kills it
    and everything it started; subprocesses it starts import the scratch copy through PYTHONPATH.
    """
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 99
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            project = _project_packages(scratch)
            for name in [n for n in sys.modules if n.split(".")[0] in project]:
                del sys.modules[name]
            here = {str(REPO), "", "."}
            sys.path[:] = [str(scratch), *(p for p in sys.path if p not in here)]
            os.environ["PYTHONPATH"] = str(scratch)
            os.environ["PYTHONPYCACHEPREFIX"] = str(scratch / ".pycache")
            sys.pycache_prefix = str(scratch / ".pycache")
            os.chdir(scratch)
            importlib.invalidate_caches()
            import pytest

            code = int(pytest.main([*_PYTEST_ARGS, *tests]))
        finally:
            os._exit(code)
    deadline = None if timeout is None else start + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if deadline is not None and time.monotonic() > deadline:
            # pytest's own session, and every process group below it: servers the tests started
            # (sandbox.procs.ManagedProcess) run in sessions of their own, which a killpg of pytest's
            # misses, and a killed pytest never reaches the fixture that would have stopped them.
            for group in (pid, *_descendants(pid)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - start
        time.sleep(0.02)
    seconds = time.monotonic() - start
    rc = os.waitstatus_to_exitcode(status)
    if rc == 5:
        return "no tests", seconds
    return ("passed" if rc == 0 else "failed"), seconds


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (parents first). Taken before any kill: a child
    whose parent died is re-parented to init and can no longer be told from anyone else's."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # the name in (...) may hold spaces
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo += children.get(child, [])
    return found


def _check_imports_copy(scratch: Path, module: str) -> None:
    """The tests must import the scratch copy, not the worktree the venv was installed from."""
    dotted = module.removesuffix(".py").replace("/", ".")
    env = dict(os.environ, PYTHONPATH=str(scratch))
    found = subprocess.run(
        [sys.executable, "-c", f"import {dotted} as m; print(m.__file__)"],
        cwd=scratch, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    if Path(found).resolve() != (scratch / module).resolve():
        raise RunError(f"{module}: tests would import {found}, not the mutated copy")


def run_module(
    root: Path,
    module: str,
    tests: Sequence[str],
    timeout: float | None = None,
    progress: Callable[[str], None] = print,
    only: Collection[tuple[int, str, str]] | None = None,
) -> ModuleResult:
    """Mutate `module` (a path relative to `root`) once per mutant and run `tests` against each.

    `only`: run just the mutants with these (line, original, mutated), e.g. the last run's survivors.
    """
    source = (root / module).read_text()
    mutants = generate(source, module)
    if only is not None:
        mutants = [m for m in mutants if (m.line, m.original, m.mutated) in only]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pm500-mutants-") as tmp:
        scratch = Path(tmp)
        scratch_copy(root, scratch)
        _check_imports_copy(scratch, module)
        _preload(scratch, tests)
        status, baseline = _pytest(scratch, tests, None)
        if status != "passed":
            raise RunError(f"{module}: the tests {' '.join(tests)} do not pass unmutated ({status})")
        limit = timeout if timeout is not None else 3 * baseline + 10
        progress(f"{module}: {len(mutants)} mutants, tests take {baseline:.1f} s, timeout {limit:.0f} s")
        target = scratch / module
        mtime = int(target.stat().st_mtime)
        killed = timeouts = 0
        survivors: list[dict[str, object]] = []
        try:
            for n, m in enumerate(mutants, 1):
                target.write_text(m.source)
                # A distinct mtime per mutant: a cached .pyc of the previous mutant is never reused.
                os.utime(target, (mtime + n, mtime + n))
                status, _ = _pytest(scratch, tests, limit)
                if status == "no tests":
                    raise RunError(f"{module}: pytest collected no tests from {' '.join(tests)}")
                if status == "failed":
                    killed += 1
                elif status == "timeout":
                    timeouts += 1
                else:
                    survivors.append({"line": m.line, "kind": m.kind, "original": m.original,
                                      "mutated": m.mutated})
                    progress(f"  survived {module}:{m.line} [{m.kind}] {m.original} -> {m.mutated}")
        finally:
            target.write_text(source)
    return ModuleResult(
        module, list(tests), len(mutants), killed, timeouts, survivors,
        round(time.monotonic() - started, 1), _commit(root), dt.date.today().isoformat(),
    )


def _commit(root: Path) -> str:
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    return done.stdout.strip() or "?"


# --------------------------------------------------------------------------------------------------
# Report

EQUIVALENT_BEGIN = "<!-- equivalent mutants: hand-written, kept while the survivor still exists -->"
EQUIVALENT_END = "<!-- end of equivalent mutants -->"
_EQUIVALENT_LINE = re.compile(
    r"^- `(?P<file>[^`:]+):(?P<line>\d+)` `(?P<original>.*?)` → `(?P<mutated>.*?)`: (?P<why>.+)$"
)


@dataclass(frozen=True)
class Equivalent:
    file: str
    line: int
    original: str
    mutated: str
    why: str

    def render(self) -> str:
        return f"- `{self.file}:{self.line}` `{self.original}` → `{self.mutated}`: {self.why}"


def read_equivalents(report: Path) -> list[Equivalent]:
    if not report.exists():
        return []
    text = report.read_text()
    if EQUIVALENT_BEGIN not in text:
        return []
    block = text.split(EQUIVALENT_BEGIN, 1)[1].split(EQUIVALENT_END, 1)[0]
    found = []
    for line in block.splitlines():
        match = _EQUIVALENT_LINE.match(line.strip())
        if match:
            found.append(Equivalent(match["file"], int(match["line"]), match["original"], match["mutated"],
                                    match["why"]))
    return found


def match_equivalents(
    results: dict[str, dict[str, object]], equivalents: list[Equivalent]
) -> tuple[dict[tuple[str, int, str, str], Equivalent], list[Equivalent]]:
    """Explanations that still apply (keyed by survivor, line updated), and the stale ones."""
    matched: dict[tuple[str, int, str, str], Equivalent] = {}
    stale = []
    for eq in equivalents:
        survivors = results.get(eq.file, {}).get("survivors", [])
        assert isinstance(survivors, list)
        same = [s for s in survivors if s["original"] == eq.original and s["mutated"] == eq.mutated]
        free = [s for s in same if (eq.file, s["line"], s["original"], s["mutated"]) not in matched]
        if not free:
            stale.append(eq)
            continue
        best = min(free, key=lambda s: abs(int(s["line"]) - eq.line))
        key = (eq.file, int(best["line"]), eq.original, eq.mutated)
        matched[key] = Equivalent(eq.file, int(best["line"]), eq.original, eq.mutated, eq.why)
    return matched, stale


def render_report(results: dict[str, dict[str, object]], equivalents: list[Equivalent]) -> str:
    matched, _ = match_equivalents(results, equivalents)
    out = [
        "# Mutation testing",
        "",
        "Would a test fail if a contract module were wrong? `bench/mutants.py` changes one thing at a time",
        "(comparison flipped or its boundary moved, condition negated, `and`/`or` swapped, constant changed,",
        "statement deleted, returned value replaced by None; docstrings, annotations and message texts are",
        "left alone) in a scratch copy of the repository and runs the module's tests against each mutant.",
        "A mutant is *killed* when a test fails (or the tests time out), *survives* otherwise.",
        "",
        "Command (CPU heavy: run it when the machine is otherwise idle):",
        "",
        "```sh",
        "./dev mutants                      # every module below",
        "./dev mutants collector/buffer.py  # one module; the others keep their last result",
        "./dev mutants --survivors MODULE   # only the last run's survivors, after adding tests",
        "```",
        "",
        "Each module runs only the tests mapped to it in `MODULE_TESTS` (bench/mutants.py), fastest first:",
        "map a new contract module (or a new test file of one) there. A full run of every module takes",
        "about 20 minutes on the shared 2-core machine; per-mutant timeout: 3x the unmutated run + 10 s.",
        "",
        "This file is generated from `docs/mutants.json`; edit only the *Equivalent mutants* section, whose",
        "entries the generator keeps while a survivor with the same file, original and mutated text exists.",
        f"Score = caught / (mutants − explained equivalents), goal ≥ {GOAL:.0%}; raw = caught / mutants.",
        "",
        "| module | tests | mutants | killed | timeouts | survived | equivalent | score | raw | run (s) "
        "| commit |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for module in sorted(results):
        r = results[module]
        survivors = r["survivors"]
        assert isinstance(survivors, list)
        eq = sum(1 for s in survivors if (module, s["line"], s["original"], s["mutated"]) in matched)
        total = int(r["mutants"])  # type: ignore[call-overload]
        caught = int(r["killed"]) + int(r["timeouts"])  # type: ignore[call-overload]
        denominator = total - eq
        score = caught / denominator if denominator else 1.0
        tests = "<br>".join(f"`{t}`" for t in r["tests"])  # type: ignore[attr-defined]
        out.append(
            f"| `{module}` | {tests} | {total} | {r['killed']} | {r['timeouts']} | {len(survivors)} | {eq} | "
            f"{score:.1%}{'' if score >= GOAL else ' ✗'} | {caught / total if total else 1.0:.1%} | "
            f"{r['seconds']} | {r['commit']} ({r['date']}) |"
        )
    out += ["", "## Surviving mutants", ""]
    any_survivor = False
    for module in sorted(results):
        survivors = results[module]["survivors"]
        assert isinstance(survivors, list)
        for s in sorted(survivors, key=lambda s: int(s["line"])):
            any_survivor = True
            key = (module, s["line"], s["original"], s["mutated"])
            note = "equivalent (see below)" if key in matched else "**not explained: write a test**"
            out.append(f"- `{module}:{s['line']}` [{s['kind']}] `{s['original']}` → `{s['mutated']}`: {note}")
    if not any_survivor:
        out.append("None.")
    out += ["", "## Equivalent mutants", "",
            "Survivors no test can kill because the program behaves the same; why, one line each.", "",
            EQUIVALENT_BEGIN]
    out += [e.render() for e in sorted(matched.values(), key=lambda e: (e.file, e.line))]
    out += [EQUIVALENT_END, ""]
    return "\n".join(out)


def load_results(path: Path = RESULTS) -> dict[str, dict[str, object]]:
    return json.loads(path.read_text()) if path.exists() else {}


def write_report(results: dict[str, dict[str, object]], report: Path = REPORT) -> list[Equivalent]:
    """Regenerate the report; returns the hand-written explanations that no longer match a survivor."""
    equivalents = read_equivalents(report)
    _, stale = match_equivalents(results, equivalents)
    report.write_text(render_report(results, equivalents))
    return stale


def _rerun_survivors(module: str, last: dict[str, object] | None, timeout: float | None) -> ModuleResult:
    """The last full run's counts, with its survivors run again against the current tests."""
    if last is None:
        raise RunError(f"{module}: no previous run in {RESULTS.relative_to(REPO)}; run it in full first")
    survivors = last["survivors"]
    assert isinstance(survivors, list)
    if len(generate((REPO / module).read_text(), module)) != last["mutants"]:
        raise RunError(f"{module} changed since its last full run: run it in full")
    only = {(int(s["line"]), str(s["original"]), str(s["mutated"])) for s in survivors}
    again = run_module(REPO, module, MODULE_TESTS[module], timeout, only=only)
    return ModuleResult(
        module, again.tests, int(last["mutants"]),  # type: ignore[call-overload]
        int(last["killed"]) + again.killed, int(last["timeouts"]) + again.timeouts,  # type: ignore[call-overload]
        again.survivors, float(last["seconds"]), again.commit, again.date,  # type: ignore[arg-type]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: all of MODULE_TESTS)")
    parser.add_argument(
        "--timeout", type=float, help="seconds per mutant (default: 3x the unmutated run + 10)"
    )
    parser.add_argument("--report-only", action="store_true", help="regenerate docs/MUTANTS.md only")
    parser.add_argument(
        "--survivors", action="store_true",
        help="re-run only the last run's survivors (after adding tests; the module must be unchanged)",
    )
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULE_TESTS]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; expected some of {sorted(MODULE_TESTS)}")
    results = load_results()
    failed = []
    if not args.report_only:
        for module in args.modules or list(MODULE_TESTS):
            results = load_results()  # another run may have finished meanwhile: keep its modules
            try:
                if args.survivors:
                    result = _rerun_survivors(module, results.get(module), args.timeout)
                else:
                    result = run_module(REPO, module, MODULE_TESTS[module], args.timeout)
            except RunError as e:  # the other modules still run; this one keeps its last result
                print(f"NOT RUN: {e}")
                failed.append(module)
                continue
            results[module] = {k: v for k, v in asdict(result).items() if k != "module"}
            RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
            print(f"{module}: {result.caught}/{result.mutants} caught, {len(result.survivors)} survived "
                  f"({result.seconds} s)")
    for eq in write_report(results):
        print(f"dropped stale equivalent-mutant note: {eq.render()}")
    print(f"wrote {REPORT.relative_to(REPO)}")
    if failed:
        print(f"not run (last results kept): {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
