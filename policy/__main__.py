"""pm500 policy pack: `pulumi preview --policy-pack policy` (CI previews run with it).

The rules live in `policy.validators` (plain, unit-tested functions); this file only registers them.
"""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy.validators import POLICIES, Validator


def _policy(name: str, description: str, check: Validator) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for message, urn in check(args.resources):
            report_violation(message, urn)

    return StackValidationPolicy(name=name, description=description, validate=validate)


PolicyPack(
    name="pm500",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[_policy(name, description, check) for name, (description, check) in POLICIES.items()],
)
