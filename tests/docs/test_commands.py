"""Every command line README.md and docs/*.md show is checked against the real program: its command,
sub-command and flags exist (`tests/docs/commands.py`), and it uses the interpreter that has the project
installed. The ones that run offline run in tests/docs/test_first_deploy.py and the suite's own tests."""

from __future__ import annotations

import pytest

from tests.docs.commands import PAGES, Shown, fences, problems, segments, shown_commands

SHOWN = shown_commands()


def test_the_pages_show_commands_to_check() -> None:
    # a guard that the extraction works: dozens of commands, fenced and inline, on most pages
    assert len(SHOWN) > 60
    assert {s.fenced for s in SHOWN} == {True, False}
    assert len({s.page for s in SHOWN}) >= 8


@pytest.mark.parametrize("shown", SHOWN, ids=str)
def test_shown_command_exists_with_its_flags(shown: Shown) -> None:
    assert problems(shown) == []


def test_the_checker_sees_what_is_wrong() -> None:
    from pathlib import Path

    bad = [Shown(Path("docs/x.md"), 1, text, True) for text in (
        "python cli.py devices provision --stack s --site a --collector c",
        ".venv/bin/python cli.py devices provison --stack s",
        ".venv/bin/python cli.py stacks deployer-policy --stack s --acount 1",
        ".venv/bin/python -m bench.drain --no-such-flag",
        "./dev tests",
    )]
    found = [problems(s) for s in bad]
    assert "only `.venv/bin/python`" in found[0][0]
    assert "no command 'provison'" in found[1][0]
    assert found[2] == ["cli.py stacks deployer-policy: no option --acount"]
    assert found[3] == ["-m bench.drain: no option --no-such-flag"]
    assert "no sub-command 'tests'" in found[4][0]


def test_shell_lines_are_split_like_a_shell() -> None:
    line = ('for s in staging prod; do .venv/bin/python cli.py deployer-policy --stack $s --json '
            '> bootstrap/policies/$s.json; done  # comment --not-a-flag')
    assert segments(line) == [["for", "s", "in", "staging", "prod"],
                              [".venv/bin/python", "cli.py", "deployer-policy", "--stack", "$s", "--json"]]


def test_every_fence_that_shows_our_commands_is_labelled_as_shell() -> None:
    """A command block without a language is read as output by a reader and skipped by the checks."""
    starts = (".venv/bin/python", "python ", "./dev ", "pulumi ", "cli.py ")
    unlabelled = [f"{f.page.name}:{f.line}" for page in PAGES for f in fences(page)
                  if not f.language and any(line.lstrip().startswith(starts)
                                            for line in f.source.splitlines())]
    assert unlabelled == []
