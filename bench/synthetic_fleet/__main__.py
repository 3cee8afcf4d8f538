"""Synthetic Pulumi programs that the fleet benchmarks compare the real program against (no program logic).

Config `bench:kind` picks one, `bench:resources` the number of registrations (components included):

- `bare`: plain `pulumi.CustomResource`s with two small inputs, no parent: what the runtime itself costs.
- `plain`: what the program registers per collector (a thing, then its group membership: same type
  tokens, same inputs) as plain `pulumi.CustomResource`s under one component.
- `typed`: the same through pulumi_aws's typed resource classes and `*Args` (which the program must use:
  a misspelt argument raises instead of silently creating a wrong resource). No program can register
  these resources for less: this is the floor.

Run by `bench.fleet_scale` on the same mock runtime (`preflight.mock_runtime`) as the program.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

THING_TYPE = "pm500-fleet-collector"
GROUP = "pm500-fleet-site-000"
ATTRIBUTES = {"site": "site-000", "env": "fleet"}


class Bare(pulumi.CustomResource):
    def __init__(self, name: str, props: dict[str, Any]) -> None:
        super().__init__("bare:index:Thing", name, props)


class Fleet(pulumi.ComponentResource):
    """`registrations - 1` things and memberships, alternating, parented like the program's."""

    def __init__(self, registrations: int, typed: bool) -> None:
        super().__init__("bench:index:Fleet", "fleet")
        opts = pulumi.ResourceOptions(parent=self)
        for i in range(registrations - 1):  # the component itself is one registration
            n = i // 2
            thing = f"fleet:site-000:edge-{n:05d}"
            if typed and i % 2 == 0:
                aws.iot.Thing(f"thing/{n}", aws.iot.ThingArgs(
                    name=thing, thing_type_name=THING_TYPE, attributes=ATTRIBUTES), opts=opts)
            elif typed:
                aws.iot.ThingGroupMembership(f"member/{n}", aws.iot.ThingGroupMembershipArgs(
                    thing_group_name=GROUP, thing_name=thing), opts=opts)
            elif i % 2 == 0:
                pulumi.CustomResource("aws:iot/thing:Thing", f"thing/{n}", {
                    "name": thing, "thingTypeName": THING_TYPE, "attributes": ATTRIBUTES}, opts)
            else:
                pulumi.CustomResource("aws:iot/thingGroupMembership:ThingGroupMembership", f"member/{n}", {
                    "thingGroupName": GROUP, "thingName": thing}, opts)


config = pulumi.Config("bench")
kind, resources = config.require("kind"), config.require_int("resources")
if kind == "bare":
    for i in range(resources):
        Bare(f"r{i}", {"name": f"r{i}", "attributes": {"site": "x", "env": "y"}})
elif kind in ("plain", "typed"):
    Fleet(resources, typed=kind == "typed")
else:
    raise ValueError(f"bench:kind: expected bare, plain or typed, got {kind!r}")
