"""Sparkplug-style topic templates: the one source for the collector, the IoT policy and the broker ACL.

A template is a tuple of topic levels. `{thing}` stands for the edge node (the AWS IoT thing name) and
`{asset}` for a device (one meter). The collector renders them with real names; the IoT policy renders
them with the `${iot:Connection.Thing.ThingName}` policy variable and `*` wildcards; the Mosquitto ACL
renders them with `%u` (the certificate CN, which is the thing name) and `+`/`#` wildcards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

SPARKPLUG_NAMESPACE = "spBv1.0"
GROUP_ID = "pm500"
THING_SEPARATOR = ":"
# Stack, site, collector and asset names: lower-case DNS-label style. `:` is excluded on purpose so
# that `<stack>:` is an unambiguous prefix of every thing name of that stack.
NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
NAME_RULE = "1-32 characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
# A thing name is also the collector certificate's CN, and X.509 caps a CN at 64 characters (RFC 5280
# ub-common-name); AWS IoT would take 128. The stack config and the CLI both apply this one rule.
MAX_THING_NAME_LENGTH = 64

# A Sparkplug Host Application id (`spBv1.0/STATE/<host id>`): one topic level. The spec allows any
# UTF-8 but `+ / #`; we also keep out what an IoT policy resource or an ACL line would read as a wildcard
# or variable (`* ? $`), whitespace and control characters.
HOST_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HOST_ID_RULE = "1-64 characters of A-Z, a-z, 0-9, '_', '.' and '-', starting with a letter or digit"

THING = "{thing}"
ASSET = "{asset}"
HOST = "{host}"


@dataclass(frozen=True)
class TopicTemplate:
    """One Sparkplug message family and whether the collector publishes or subscribes to it."""

    message_type: str
    levels: tuple[str, ...]
    direction: str  # "publish" | "subscribe"

    def render(self, thing: str, asset: str | None = None, host: str | None = None) -> str:
        return "/".join(_fill(level, thing, asset, host) for level in self.levels)


def _fill(level: str, thing: str, asset: str | None, host: str | None = None) -> str:
    if level == ASSET:
        if asset is None:
            raise ValueError("this topic needs an asset")
        return asset
    if level == HOST:
        if host is None:
            raise ValueError("this topic needs a host application id")
        return host
    return thing if level == THING else level


def _sparkplug(message_type: str, *device: str, direction: str = "publish") -> TopicTemplate:
    return TopicTemplate(
        message_type, (SPARKPLUG_NAMESPACE, GROUP_ID, message_type, THING, *device), direction
    )


NBIRTH = _sparkplug("NBIRTH")
NDEATH = _sparkplug("NDEATH")
NDATA = _sparkplug("NDATA")
DBIRTH = _sparkplug("DBIRTH", ASSET)
DDATA = _sparkplug("DDATA", ASSET)
DDEATH = _sparkplug("DDEATH", ASSET)
NCMD = _sparkplug("NCMD", direction="subscribe")
# The Primary Host Application's birth/death certificate (JSON `{"online", "timestamp"}`, retained).
STATE = TopicTemplate("STATE", (SPARKPLUG_NAMESPACE, "STATE", HOST), "subscribe")
# Never subscribed: the collector UNSUBSCRIBEs from it to have the broker confirm, with its UNSUBACK,
# that it received every packet written before (QoS 0 DDATA; `collector.mqtt_sink`). No permission is
# needed: MQTT servers answer every UNSUBSCRIBE [MQTT-3.10.4-5] and IoT policies do not govern it.
DELIVERY_CHECK = TopicTemplate("DELIVERY_CHECK", ("pm500", "delivery-check", THING), "unsubscribe")
# The collector's named shadow (collector.shadow), AWS IoT Device Shadow service, "Device Shadow MQTT
# topics". It publishes only `update` and `get` (never `delete`, never the classic shadow) and reads the
# answers of its own named shadow. The reading side is one template (`.../name/pm500/#`, `*` in the IoT
# policy) rather than its five topics: IoT policies are capped at 2048 characters and the five
# topicfilter + topic resources alone would take 1,200 of them; it grants reading nothing but this
# thing's own shadow. `shadow_topic` gives the exact topics the collector subscribes to.
SHADOW_NAME = "pm500"
_SHADOW_LEVELS = ("$aws", "things", THING, "shadow", "name", SHADOW_NAME)
SHADOW_UPDATE = TopicTemplate("SHADOW_UPDATE", (*_SHADOW_LEVELS, "update"), "publish")
SHADOW_GET = TopicTemplate("SHADOW_GET", (*_SHADOW_LEVELS, "get"), "publish")
SHADOW = TopicTemplate("SHADOW", (*_SHADOW_LEVELS, "#"), "subscribe")
# What the collector subscribes to: not `update/accepted` (it echoes each report back: billed traffic for
# nothing; a report is assumed accepted unless `update/rejected` says otherwise).
SHADOW_ANSWERS = ("update/rejected", "update/delta", "get/accepted", "get/rejected")


def shadow_topic(thing: str, operation: str) -> str:
    """`$aws/things/<thing>/shadow/name/pm500/<operation>`, e.g. operation `update/delta`."""
    return "/".join((*(thing if level == THING else level for level in _SHADOW_LEVELS), operation))


# Alarm/output state changes of one meter (payload: `collector.payload.status_event`). Outside the
# Sparkplug namespace on purpose: Sparkplug defines no event message type, and a Sparkplug host must
# not be handed one it does not know.
EVENTS_NAMESPACE = "pm500"
EVENT = TopicTemplate("EVENT", (EVENTS_NAMESPACE, "event", THING, ASSET), "publish")
EVENT_THING_LEVEL = 3  # IoT SQL topic(3) of an EVENT topic is the thing name

COLLECTOR_TOPICS: tuple[TopicTemplate, ...] = (
    NBIRTH, NDEATH, NDATA, DBIRTH, DDATA, DDEATH, NCMD, SHADOW_UPDATE, SHADOW_GET, SHADOW, EVENT
)


def thing_name(stack: str, site: str, collector: str) -> str:
    """The AWS IoT thing name (= MQTT client id = certificate CN) of one collector."""
    for label, value in (("stack", stack), ("site", site), ("collector", collector)):
        if THING_SEPARATOR in value:
            raise ValueError(f"{label} name {value!r} must not contain {THING_SEPARATOR!r}")
    return THING_SEPARATOR.join((stack, site, collector))


def check_thing_name_length(thing: str) -> None:
    """Refuse a thing name no certificate can carry as its CN (ValueError saying what to shorten)."""
    if len(thing) > MAX_THING_NAME_LENGTH:
        raise ValueError(
            f"thing name {thing!r} is {len(thing)} characters; a thing name is the certificate CN and holds "
            f"at most {MAX_THING_NAME_LENGTH}: shorten the stack, site or collector name"
        )


def stack_thing_prefix(stack: str) -> str:
    """Prefix shared by every thing of `stack` and by no thing of any other stack."""
    return stack + THING_SEPARATOR


def ddata_filter() -> str:
    """MQTT filter matching the DDATA traffic of every collector (topic rules narrow it by stack)."""
    return "/".join((SPARKPLUG_NAMESPACE, GROUP_ID, DDATA.message_type, "+", "+"))


def event_filter() -> str:
    """MQTT filter matching the alarm/output events of every collector (topic rules narrow it by stack)."""
    return "/".join((*EVENT.levels[:2], "+", "+"))


def _pattern(template: TopicTemplate, thing: str, single: str, multi: str) -> str:
    levels = [thing if lvl == THING else single if lvl == ASSET else lvl for lvl in template.levels]
    if levels[-1] == "#":
        levels[-1] = multi
    return "/".join(levels)


def iot_policy_topics(direction: str, thing_variable: str = "${iot:Connection.Thing.ThingName}") -> list[str]:
    """Topic names (for `topic/...` ARNs) a collector may publish or receive, with IoT policy wildcards."""
    return [
        _pattern(t, thing_variable, "*", "*")
        for t in COLLECTOR_TOPICS
        if t.direction == direction
    ]


def mosquitto_acl_patterns(templates: Iterable[TopicTemplate] = COLLECTOR_TOPICS) -> list[str]:
    """Mosquitto `pattern` ACL lines equivalent to the IoT policy: each client only under its own CN."""
    lines = []
    for t in templates:
        access = {"publish": "write", "subscribe": "read"}[t.direction]
        lines.append(f"pattern {access} {_pattern(t, '%u', '+', '#')}")
    return lines


# -- Sparkplug Host Applications ----------------------------------------------------------------------
# A collector configured with a Primary Host reads that host's STATE. In an IoT policy the host id is
# the thing's attribute of this name (`iot:Connection.Thing.Attributes[...]`), so each collector may
# read its own host's STATE only; the Mosquitto ACL renders it for the host ids it is given.
PRIMARY_HOST_ATTRIBUTE = "primaryHostId"


def collector_state_topic(host_variable: str) -> str:
    """The STATE topic a collector reads, for an IoT policy (`host_variable`) or an ACL (a host id)."""
    return STATE.render("", host=host_variable)


# A host application (Ignition, a HiveMQ bridge, a Tahu app) using the broker of one stack: it reads every
# edge node of the stack, sends them NCMD (rebirth requests, setting writes) and publishes its own
# retained STATE. The IoT policy narrows what it receives to the stack's things (`<stack>:*`): MQTT
# filters cannot select a level by prefix, the policy's `iot:Receive` can.
HOST_READ_FILTERS = (
    f"{SPARKPLUG_NAMESPACE}/#",  # what hosts such as Ignition subscribe to by default
    f"{SPARKPLUG_NAMESPACE}/{GROUP_ID}/#",
)


def host_topics(host_id: str, thing_pattern: str) -> dict[str, list[str]]:
    """What a host application may do, by IoT policy action: topic filters it may subscribe to, topics it
    may receive, publish and publish retained. `thing_pattern` stands for every edge node of the stack
    (`<stack>:*` in an IoT policy, `+` in an ACL)."""
    state = STATE.render("", host=host_id)
    edge_node_messages = "/".join((SPARKPLUG_NAMESPACE, GROUP_ID, "*", thing_pattern))
    return {
        "subscribe": [*HOST_READ_FILTERS, state],
        "receive": [edge_node_messages, state],  # IoT policy `*` spans levels: devices' topics too
        "publish": [NCMD.render(thing_pattern), state],
        "retain": [state],
    }


def host_mosquitto_acl(host_id: str) -> list[str]:
    """A Mosquitto ACL for one host application (user = its certificate CN = its host id), from the same
    `host_topics` as its IoT policy, and the pattern that lets collectors read its STATE. One broker per
    stack: what it may receive needs no narrowing; and a pattern cannot name a thing attribute, so every
    collector of the broker may read the STATE of each host listed (the IoT policy: its own only)."""
    allowed = host_topics(host_id, "+")
    return [
        f"pattern read {collector_state_topic(host_id)}",
        f"user {host_id}",
        *(f"topic read {t}" for t in allowed["subscribe"]),
        *(f"topic write {t}" for t in allowed["publish"]),
    ]
