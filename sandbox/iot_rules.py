"""The AWS IoT rules engine for the sandbox: runs the topic rules registered in moto on Mosquitto's traffic.

moto stores topic rules but never runs them (it has no broker). This stand-in reads the enabled rules
from moto (`ListTopicRules` / `GetTopicRule`: what a deploy registered, not a copy kept here),
subscribes to each rule's FROM topic filter on the broker and, for every message that passes the WHERE
clause, performs the rule's actions against moto:

- `stepFunctions`: StartExecution of the named state machine (name: `executionNamePrefix` + a UUID), the
  SELECT result as input (moto runs the state machine when `execute_state_machine` is on:
  `sandbox.moto.MotoServer(execute_state_machines=True)`);
- `dynamoDB`: PutItem of `{hashKeyField: hashKeyValue, rangeKeyField: rangeKeyValue, payloadField:
  <SELECT result>}`, key values after substitution (`${topic(3)}`).

Only the IoT SQL this project writes is understood, and anything else is refused loudly (`RuleError`)
rather than guessed: `SELECT` of `*`, `topic(n) AS x`, `timestamp() AS x` and JSON paths (`a.b AS x`);
`FROM '<filter>'`; an optional `WHERE startswith(topic(n), '<prefix>')`. Any other action is refused too.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from boto3.dynamodb.types import TypeSerializer

from sandbox.mosquitto import OBSERVER_CN, MosquittoBroker
from sandbox.mqtt import close_client, tls_client

log = logging.getLogger(__name__)


class RuleError(ValueError):
    """A rule outside what this stand-in implements: refused, never approximated."""


_SQL = re.compile(
    r"^SELECT (?P<select>.+?) FROM '(?P<topic>[^']+)'"
    r"(?: WHERE startswith\(topic\((?P<level>\d+)\), '(?P<prefix>[^']*)'\))?$"
)
_ITEM = re.compile(
    r"^(?:(?P<star>\*)|(?P<expr>topic\(\d+\)|timestamp\(\)|[A-Za-z_][\w.]*) AS (?P<name>\w+))$"
)
_TEMPLATE = re.compile(r"\$\{topic\((\d+)\)\}")


@dataclass(frozen=True)
class Rule:
    name: str
    topic_filter: str
    select: tuple[tuple[str, str], ...]  # (expression, name); ("*", "") for the whole message
    where_level: int | None
    where_prefix: str
    actions: tuple[dict[str, Any], ...]

    def evaluate(self, topic: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The SELECT result for a message on `topic`, or None when the WHERE clause drops it."""
        levels = topic.split("/")
        if self.where_level is not None and not _level(levels, self.where_level).startswith(
            self.where_prefix
        ):
            return None
        out: dict[str, Any] = {}
        for expression, name in self.select:
            if expression == "*":
                out.update(payload)
            elif expression.startswith("topic("):
                out[name] = _level(levels, int(expression[6:-1]))
            elif expression == "timestamp()":
                out[name] = int(time.time() * 1000)
            else:
                value: Any = payload
                for part in expression.split("."):
                    value = value.get(part) if isinstance(value, dict) else None
                if value is not None:  # IoT SQL leaves Undefined out of the result
                    out[name] = value
        return out


def _level(levels: list[str], n: int) -> str:
    return levels[n - 1] if 0 < n <= len(levels) else ""


def parse_rule(name: str, payload: dict[str, Any]) -> Rule:
    """A rule as `GetTopicRule` returns it, parsed, or `RuleError` naming what is not supported."""
    sql = " ".join(payload["sql"].split())
    match = _SQL.match(sql)
    if match is None:
        raise RuleError(f"rule {name}: SQL outside the sandbox's subset: {sql}")
    select = []
    for item in (i.strip() for i in match["select"].split(",")):
        parsed = _ITEM.match(item)
        if parsed is None:
            raise RuleError(f"rule {name}: SELECT item not supported: {item}")
        select.append(("*", "") if parsed["star"] else (parsed["expr"], parsed["name"]))
    actions = tuple(payload.get("actions", []))
    for action in actions:
        if set(action) - {"stepFunctions", "dynamoDB"}:
            raise RuleError(f"rule {name}: action not supported: {sorted(action)}")
    level = int(match["level"]) if match["level"] else None
    return Rule(name, match["topic"], tuple(select), level, match["prefix"] or "", actions)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (`+` one level, `#` the rest)."""
    parts, levels = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(parts):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(parts) == len(levels)


class RulesEngine:
    """Start it after the rules exist in moto (a deploy, a plan replay); `reload()` after they change."""

    def __init__(self, broker: MosquittoBroker, client: Callable[[str], Any], workdir: Path) -> None:
        """`client(service)`: moto's clients (`sandbox.plan_replay.moto_clients`)."""
        self._broker = broker
        self._aws = client
        self._workdir = workdir
        self._rules: list[Rule] = []
        self._lock = threading.Lock()  # moto is not thread-safe
        self._client: mqtt.Client | None = None
        self.errors: list[str] = []  # what a rule's error action would have logged

    @property
    def rules(self) -> list[Rule]:
        """The rules being run (the enabled ones moto holds that this stand-in understands)."""
        return list(self._rules)

    def reload(self) -> list[Rule]:
        iot = self._aws("iot")
        rules = []
        for summary in iot.list_topic_rules().get("rules", []):
            if summary.get("ruleDisabled"):
                continue
            payload = iot.get_topic_rule(ruleName=summary["ruleName"])["rule"]
            try:
                rules.append(parse_rule(summary["ruleName"], payload))
            except RuleError as e:
                log.info("sandbox rules engine skips a rule", extra={"reason": str(e)})
        self._rules = rules
        if self._client is not None:
            self._client.subscribe([(r.topic_filter, 1) for r in rules])
        return rules

    def start(self) -> RulesEngine:
        rules = self.reload()
        cert, key = self._broker.ca.issue(OBSERVER_CN, self._workdir)
        b = self._broker
        client = tls_client(b.host, b.port, b.ca_file, cert, key, client_id=f"{OBSERVER_CN}-rules")
        client.on_message = self._on_message
        client.on_connect = lambda c, *_: c.subscribe([(r.topic_filter, 1) for r in self._rules])
        subscribed = threading.Event()
        client.on_subscribe = lambda *_: subscribed.set()
        if rules:
            client.subscribe([(r.topic_filter, 1) for r in rules])
            if not subscribed.wait(20):
                raise TimeoutError("rules engine: subscriptions not granted")
        self._client = client
        return self

    def stop(self) -> None:
        if self._client is not None:
            close_client(self._client)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            return  # the rules here all read JSON
        if not isinstance(payload, dict):
            return
        for rule in self._rules:
            if not topic_matches(rule.topic_filter, message.topic):
                continue
            selected = rule.evaluate(message.topic, payload)
            if selected is None:
                continue
            for action in rule.actions:
                self._perform(rule, action, message.topic, selected)

    def _perform(self, rule: Rule, action: dict[str, Any], topic: str, selected: dict[str, Any]) -> None:
        levels = topic.split("/")

        def substitute(text: str) -> str:
            return _TEMPLATE.sub(lambda m: _level(levels, int(m[1])), text)

        try:
            if "stepFunctions" in action:
                spec = action["stepFunctions"]
                arn = self._state_machine_arn(spec["stateMachineName"])
                name = f"{spec.get('executionNamePrefix', '')}{uuid.uuid4()}"
                with self._lock:
                    self._aws("stepfunctions").start_execution(
                        stateMachineArn=arn, name=name, input=json.dumps(selected))
            else:
                spec = action["dynamoDB"]
                item: dict[str, Any] = {spec["hashKeyField"]: substitute(spec["hashKeyValue"])}
                if spec.get("rangeKeyField"):
                    item[spec["rangeKeyField"]] = substitute(spec["rangeKeyValue"])
                item[spec.get("payloadField") or "payload"] = selected
                serialized = {k: _serializer.serialize(_numbers(v)) for k, v in item.items()}
                with self._lock:
                    self._aws("dynamodb").put_item(TableName=substitute(spec["tableName"]), Item=serialized)
        except Exception as e:  # a failing action is what the rule's error action logs
            self.errors.append(f"{rule.name}: {e}")
            log.warning("sandbox rule action failed", extra={"rule": rule.name, "reason": str(e)})

    def _state_machine_arn(self, name: str) -> str:
        with self._lock:
            machines = self._aws("stepfunctions").list_state_machines()["stateMachines"]
        for machine in machines:
            if machine["name"] == name:
                return str(machine["stateMachineArn"])
        raise RuleError(f"no state machine named {name!r}")


_serializer = TypeSerializer()


def _numbers(value: Any) -> Any:
    """JSON numbers as DynamoDB numbers (TypeSerializer refuses floats; IoT writes them as N)."""
    return json.loads(json.dumps(value), parse_float=Decimal)
