"""Every AWS name the program creates, derived from the stack name in one place.

All names start with the stack so that staging and prod (or any other stack) can live in the same AWS
account and region without colliding. IoT topic-rule names only allow `[A-Za-z0-9_]`: stack names are
`[a-z0-9-]` (collector.topics.NAME_PATTERN), so mapping `-` to `_` is injective and two stacks can never
share a rule name.

Site thing groups are `pm500-<stack>:<site>`: `:` appears in no stack or site name, so no two
(stack, site) pairs share a group name (with `-` stack `a` + site `b-c` and stack `a-b` + site `c`
did), and `pm500-<stack>:*` matches this stack's site groups only.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.topics import GROUP_ID, THING_SEPARATOR, thing_name

PRODUCT = GROUP_ID  # "pm500"
# The tag key every taggable resource of a stack carries, value the stack's name; its data key carries it
# too (made by the bootstrap), and the deployer policy's key statements require it.
STACK_TAG = f"{PRODUCT}:stack"
TEMPLATE_NAME_MAX = 36  # AWS IoT TemplateName (botocore iot model; checked by tests/infra/test_aws_names.py)
_TEMPLATE_PURPOSE = "claim"
# The longest stack name every physical name can hold; the provisioning template's is the tightest.
MAX_STACK_NAME_LENGTH = TEMPLATE_NAME_MAX - len(f"{PRODUCT}--{_TEMPLATE_PURPOSE}")


@dataclass(frozen=True)
class Names:
    """Physical names for one stack."""

    stack: str

    @property
    def prefix(self) -> str:
        return f"{PRODUCT}-{self.stack}"

    def resource(self, purpose: str) -> str:
        """`pm500-<stack>-<purpose>`: roles, stream, delivery stream, log groups, bus, table."""
        return f"{self.prefix}-{purpose}"

    @property
    def thing_type(self) -> str:
        return self.resource("collector")

    @property
    def root_group(self) -> str:
        return self.prefix

    def site_group(self, site: str) -> str:
        return f"{self.site_group_prefix}{site}"

    @property
    def site_group_prefix(self) -> str:
        """What every site group of this stack, and no other group, starts with."""
        return f"{self.prefix}{THING_SEPARATOR}"

    def thing(self, site: str, collector: str) -> str:
        return thing_name(self.stack, site, collector)

    @property
    def collector_policy(self) -> str:
        return self.resource("collector")

    @property
    def collector_state_policy(self) -> str:
        """The IoT policy letting each collector read its Primary Host Application's STATE."""
        return self.resource("collector-host-state")

    def host_policy(self, host_id: str) -> str:
        """The IoT policy of the Sparkplug Host Application `host_id` (IoT policy names take its
        characters: letters, digits, `_`, `.`, `-`)."""
        return self.resource(f"host-{host_id}")

    @property
    def permissions_boundary(self) -> str:
        """The managed policy every role of the stack carries as its permissions boundary. Created by
        the bootstrap (an administrator), never by the stack: the deployer cannot change it."""
        return self.resource("boundary")

    @property
    def data_key_alias(self) -> str:
        """The alias of the stack's KMS key (streams, archive, queue, table). The bootstrap makes the key
        and this alias (an administrator: the deployer may not create, tag or administer keys); the
        stack looks the key up by it."""
        return f"alias/{self.resource('data')}"

    @property
    def provisioning_template(self) -> str:
        return self.resource(_TEMPLATE_PURPOSE)

    def edge(self, site: str, purpose: str | None = None) -> str:
        """Docker names on an edge host: `pm500_<stack>_<site>[_<purpose>]` (containers, volumes, network).

        Sites of one stack, or of several stacks, may share a Docker host: the site keeps their
        containers, volumes and networks apart, and `_` (never part of a stack or site name) keeps the
        mapping injective, where `-` would give stack `a` + site `b-c` the names of stack `a-b` + site `c`.
        """
        base = f"{PRODUCT}_{self.stack}_{site}"
        return f"{base}_{purpose}" if purpose else base

    def rule(self, route: str) -> str:
        """IoT topic-rule names: only letters, digits and `_`."""
        return f"{PRODUCT}_{self.stack.replace('-', '_')}_{route}"
