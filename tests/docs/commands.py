"""The command lines the documentation shows: found with maintained Markdown parsers (Sybil's fenced-code
lexer for blocks, markdown-it for inline code spans), split with `shlex` like a shell would, and judged
against the real programs: `cli.py` against its typer command tree, `python -m X` against X's `--help`,
`./dev X` against the script's sub-commands."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import typer
from markdown_it import MarkdownIt
from sybil import Document
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

import cli

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"sh", "bash", "console", "shell"}
_FENCES = RawFencedCodeBlockLexer(info_pattern=re.compile(r"(?P<language>[^\n]*)$\n", re.MULTILINE),
                                  mapping={"language": "language", "source": "source"})
# How a shown command starts when it is ours (the first words), and the interpreter it must use.
VENV_PYTHON = ".venv/bin/python"
# The collector image runs `python -m collector` with its own interpreter: the one bare `python` allowed.


@dataclass(frozen=True)
class Shown:
    """One command as a page shows it."""

    page: Path
    line: int
    text: str  # one logical line: continuations joined, comment dropped
    fenced: bool

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {self.text}"


@dataclass(frozen=True)
class Fence:
    page: Path
    line: int
    language: str
    source: str


def fences(page: Path) -> list[Fence]:
    text = page.read_text()
    document = Document(text, str(page))
    return [Fence(page, text.count("\n", 0, region.start) + 1, str(region.lexemes["language"]).strip(),
                  str(region.lexemes["source"])) for region in _FENCES(document)]


def logical_lines(source: str) -> Iterator[tuple[int, str]]:
    """(offset of the first line, text) of each shell line: `\\` continuations joined."""
    pending, start = "", 0
    for i, line in enumerate(source.splitlines()):
        if not pending:
            start = i
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, (pending + line).strip()
        pending = ""


def segments(line: str) -> list[list[str]]:
    """The simple commands of one shell line (split at `;`, `&&`, `||`, `|`, loop keywords dropped),
    each as words, environment assignments and redirections removed."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out: list[list[str]] = [[]]
    redirect = False
    try:
        words = list(lexer)
    except ValueError:  # an unbalanced quote: not a command line
        return []
    for word in words:
        if set(word) <= set(";&|"):
            out.append([])
        elif set(word) <= set("<>"):
            redirect = True
        elif redirect:
            redirect = False
        elif not out[-1] and (re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", word) or word in ("do", "then", "done")):
            continue
        else:
            out[-1].append(word)
    return [s for s in out if s]


def shown_commands() -> list[Shown]:
    """Every command line of README.md and docs/*.md that runs one of ours (python, cli.py, ./dev)."""
    found: list[Shown] = []
    for page in PAGES:
        for fence in fences(page):
            if fence.language not in SHELL_LANGUAGES:
                continue
            for offset, line in logical_lines(fence.source):
                if _ours(line):
                    found.append(Shown(page, fence.line + 1 + offset, line, fenced=True))
        text = page.read_text()
        for token in MarkdownIt().parse(text):
            for child in token.children or []:
                if child.type == "code_inline" and _ours(child.content):
                    found.append(Shown(page, (token.map or [0])[0] + 1, child.content, fenced=False))
    return found


def _ours(line: str) -> bool:
    return bool(re.match(r"(\S+=\S+ )*(\.venv/bin/)?python3? |(\./)?dev |cli\.py ", line.strip()))


# --- judging one command -------------------------------------------------------------------------------

def problems(shown: Shown) -> list[str]:
    out = []
    for words in segments(shown.text):
        if words[0] in ("python", "python3") and words[1:3] != ["-m", "collector"]:
            out.append(f"`{words[0]}`: only `{VENV_PYTHON}` has the project installed (./dev setup)")
        if words[0] in (VENV_PYTHON, "python", "python3") and len(words) > 1:
            if words[1] == "cli.py":
                out += cli_problems(words[2:])
            elif words[1] == "-m" and len(words) > 2:
                out += module_problems(words[2], words[3:])
        elif words[0] in ("./dev", "dev"):
            out += dev_problems(words[1:])
        elif words[0] == "cli.py":
            out += cli_problems(words[1:])
    return out


def _options(command: Any) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}


def cli_problems(args: list[str]) -> list[str]:
    command: Any = typer.main.get_command(cli.app)  # typer's own click: a group has `commands`
    path = ["cli.py"]
    rest = list(args)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        if name.isupper() or name == "..." or name.startswith("<"):  # a placeholder (GROUP, COMMAND)
            return []
        if name not in command.commands:
            return [f"{' '.join(path)}: no command {name!r} (has {', '.join(sorted(command.commands))})"]
        command, path = command.commands[name], [*path, name]
    if hasattr(command, "commands") and rest != ["--help"] and rest:
        return [f"{' '.join(path)}: a group, not a command"]
    known = _options(command)
    return [f"{' '.join(path)}: no option {flag}" for flag in _flags(rest) if flag not in known]


def _flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


@cache
def module_help(module: str) -> str:
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    return result.stdout if result.returncode == 0 else ""


def module_problems(module: str, args: list[str]) -> list[str]:
    if module == "pytest":
        return []
    text = module_help(module)
    if not text:
        return [f"-m {module}: `--help` does not answer with help"]
    return [f"-m {module}: no option {flag}" for flag in _flags(args) if not re.search(rf"{flag}\b", text)]


@cache
def dev_commands() -> frozenset[str]:
    return frozenset(re.findall(r"^  ([a-z]+)\) shift;", (ROOT / "dev").read_text(), re.MULTILINE))


def dev_problems(args: list[str]) -> list[str]:
    if not args:
        return []
    if args[0] not in dev_commands():
        return [f"./dev: no sub-command {args[0]!r} (has {', '.join(sorted(dev_commands()))})"]
    if args[0] == "demo":  # `./dev demo ARGS` is `python -m demo ARGS`
        return module_problems("demo", args[1:])
    return []
