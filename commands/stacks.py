"""`cli.py stacks ...`: what a stack needs before it is deployed, judged without AWS."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from commands.console import err, out
from commands.help_format import command_group
from commands.options import JsonOut, WholeStack

app, command = command_group(
    "What a stack needs before `pulumi up`, derived from the program."
)


@command("deployer-policy")
def deployer_policy_command(
    stack: WholeStack,
    mode: Annotated[
        str, typer.Option(help="preview (read-only: pulumi preview/refresh), deploy (pulumi up) or boundary "
                          "(the permissions boundary of the stack's roles, made by the bootstrap).")
    ] = "deploy",
    account: Annotated[str, typer.Option(help="AWS account id the stack deploys to (default *: any).")] = "*",
    json_out: JsonOut = False,
) -> None:
    """Print the least-privilege IAM policy of whoever runs `pulumi preview`/`up` for STACK.

    Derived from the resources the program declares (one or more managed-policy documents)."""
    from preflight.deployer_policy import DeployerPolicyError, policy_chars, stack_deployer_policy

    try:
        policy = stack_deployer_policy(stack, mode, account)
    except DeployerPolicyError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if json_out:
        print(json.dumps(list(policy.documents), indent=2))
        return
    table = Table(title=f"{stack} {mode} policy: {len(policy.actions)} actions")
    for column in ("document", "statements", "characters"):
        table.add_column(column, justify="right")
    for i, document in enumerate(policy.documents, 1):
        table.add_row(str(i), str(len(document["Statement"])), str(policy_chars(document)))
    out.print(table)
    out.print("Not included: the Pulumi state backend, the secrets provider's KMS key and edge hosts "
              "(see docs/infra.md). --json prints the documents.")
