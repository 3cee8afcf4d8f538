"""preflight.mock_runtime as a process uses it: `cli.py stacks deployer-policy` and `python -m
preflight.mock_runtime` evaluate the program and exit."""

from __future__ import annotations

import threading

from preflight.mock_runtime import evaluate_stack


def test_an_evaluation_leaves_no_thread_behind() -> None:
    """Pulumi's mock monitor answers invokes (the stack's getKey, getCallerIdentity, ...) on executor
    threads, each holding an event loop nothing closes. Threads still idle at interpreter exit had those
    loops collected during shutdown, after their sockets: an intermittent "Exception ignored ... Invalid
    file descriptor: -1" traceback on stderr of every command that evaluates the program."""
    before = set(threading.enumerate())
    evaluated = evaluate_stack("staging")
    assert evaluated.invokes  # the program does invoke: the executor was used
    assert set(threading.enumerate()) - before == set()
