"""The bootstrap program on Pulumi's mock runtime (no AWS, no Pulumi CLI): what an administrator's
`pulumi up` in bootstrap/ would create.

The stand-ins start from the account the first deploy leaves (docs/infra.md, "First deploy"): the
bootstrap's plan replayed into moto before a stack's own (`sandbox.plan_replay`), so that the stack finds
its data key by its alias there as it would in AWS, from the same code an administrator runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from bootstrap.ci_roles import NAMESPACE
from preflight.mock_runtime import EvaluatedStack, evaluate_stack, load_stack_config_file
from preflight.provider_requests import ApiRequest, stack_requests

BOOTSTRAP_DIR = Path(__file__).resolve().parent
STACK = "ci"  # Pulumi.ci.yaml
_QUIET = logging.getLogger(__name__)
_QUIET.propagate = False
_QUIET.addHandler(logging.NullHandler())


def evaluate_bootstrap(region: str | None = None, logger: logging.Logger | None = None,
                       **config: Any) -> EvaluatedStack:
    """The bootstrap for `Pulumi.ci.yaml`, each `pm500-bootstrap:<key>` of `config` replacing the file's
    (objects as JSON text, as the engine passes them), in `region` if given (its `aws:region`); its
    warnings go to `logger` (default: the root logger)."""
    values, secret = load_stack_config_file(STACK, BOOTSTRAP_DIR)
    values.update({f"{NAMESPACE}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
    if region:
        values["aws:region"] = region
    return evaluate_stack(STACK, BOOTSTRAP_DIR, config=values, secret_keys=secret, program_dir=BOOTSTRAP_DIR,
                          logger=logger)


def bootstrap_requests(stack: EvaluatedStack) -> list[ApiRequest]:
    """What the bootstrap's `pulumi up` sends for an account holding `stack` alone (its CI roles, its data
    key and alias, in the stack's region), in order: replay these before the stack's own requests. Its
    warnings (no CI policy files given, no boundary file) concern GitHub's roles, not this replay: they go
    to the `bootstrap.plan` logger, not propagated."""
    return stack_requests(evaluate_bootstrap(stack.config.get("aws:region"), _QUIET, stacks=[stack.stack]))
