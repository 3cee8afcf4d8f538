"""The rules that live only in the services' guides (`service_guide_rules.yaml`), and the checks built on
them: every grant is judged against the ARN AWS actually authorizes, and every request against the
limits that depend on the other end.

- `request_arn` / `grant_arn`: the ARN a request carries for an action on a resource, and the Resource a
  policy needs to match it (CloudWatch Logs' trailing `:*`, ...).
- `deployer_findings`: every action the deployer policy grants, on every resource of the stack of the
  action's resource types (the data key it looks up included), judged by `preflight.iam_evaluator`
  against the ARN the request carries.
- `rule_role_findings`: every topic-rule action (and SQL function that reads another service) of the
  stack, judged against its role's inline policy with what the guide says the role must allow.
- `state_machine_findings`: every Task of every state machine that calls a service (optimized
  integrations), judged against the state machine role's inline policy with what the guide says.
- `pipe_findings`: every pipe's batch size against its target's limit.
- `protobuf_sql_findings`: rules reading decoded protobuf JSON use 64-bit fields only through a cast.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from infra.naming import STACK_TAG
from preflight.iam_evaluator import Decision, evaluate
from preflight.iam_reference import action as reference_action
from preflight.mock_runtime import (
    IAM_RESOURCE_TYPES,
    KEY_LOOKUP,
    MOCK_ACCOUNT_ID,
    EvaluatedStack,
    looked_up_key_arn,
    mock_state,
    partition_of,
)

RULES_FILE = Path(__file__).with_name("service_guide_rules.yaml")
# A value for the parts of a request ARN that only the request knows (a log stream's name, a topic level).
SAMPLE = "x"


@dataclass(frozen=True)
class Source:
    guide: str
    section: str
    url: str

    def __str__(self) -> str:
        return f"{self.guide}, \"{self.section}\" ({self.url})"


@cache
def rules() -> dict[str, Any]:
    """The rules file, read once; each row checked to name its source."""
    data = yaml.safe_load(RULES_FILE.read_text())
    for row in data["authorized_arns"]:
        Source(**row["source"])
    for table in ("rule_actions", "state_machine_tasks"):
        for name, row in data[table].items():
            if set(row["source"]) != {"guide", "section", "url"}:
                raise ValueError(f"{RULES_FILE.name}: {table}.{name}: source needs guide, section, url")
    return dict(data)


def source(*path: str) -> Source:
    node: Any = rules()
    for part in path:
        node = node[part]
    return Source(**node["source"])


def _authorized_arn_row(action_name: str, service: str, resource_type: str) -> dict[str, Any] | None:
    for row in rules()["authorized_arns"]:
        if (row["service"], row["resource_type"]) == (service, resource_type) and \
                action_name.lower() not in {a.lower() for a in row["except_actions"]}:
            return dict(row)
    return None


def request_arn(action_name: str, arn: str, resource_type: str) -> str:
    """The ARN a request for `action_name` on `arn` (of the reference's `resource_type`) carries."""
    row = _authorized_arn_row(action_name, action_name.split(":", 1)[0], resource_type)
    return row["request"].format(arn=arn) if row else arn


def grant_arn(action_name: str, arn: str, resource_type: str) -> str:
    """The Resource a policy needs for `action_name` on `arn`: what matches `request_arn`."""
    row = _authorized_arn_row(action_name, action_name.split(":", 1)[0], resource_type)
    return row["grant"].format(arn=arn) if row else arn


def pipe_target_max_batch(target_arn: str) -> int | None:
    """The largest batch a pipe may ask for with this target (None: the guide states no limit)."""
    parts = target_arn.split(":", 5)
    if len(parts) < 6:
        return None
    service, resource = parts[2], parts[5]
    kind = re.split(r"[/:]", resource, maxsplit=1)[0]
    targets = rules()["pipe_target_max_batch"]["targets"]
    limit = targets.get(f"{service}:{kind}", targets.get(service))
    return int(limit) if limit is not None else None


# --- the deployer policy ------------------------------------------------------------------------------

def _stack_arns(stack: EvaluatedStack, account: str) -> dict[tuple[str, str], list[str]]:
    """(service, reference resource type) -> the concrete ARN of each of the stack's resources of that
    type, as AWS will name them (the mock runtime's names: explicit, or the provider's autoname)."""
    region = stack.config.get("aws:region") or "us-east-1"
    arns: dict[tuple[str, str], list[str]] = {}
    by_name = {r.inputs.get("bucket") or mock_state(r.type, r.name, r.inputs, region, account)[0]: r
               for r in stack.of_type("aws:s3/bucket:Bucket")}
    for r in stack.resources:
        if r.type in IAM_RESOURCE_TYPES:
            arn = mock_state(r.type, r.name, r.inputs, region, account)[1]["arn"]
            arns.setdefault(IAM_RESOURCE_TYPES[r.type], []).append(str(arn))
        elif r.type == "aws:cloudwatch/logStream:LogStream":
            group = f"arn:{partition_of(region)}:logs:{region}:{account}:log-group:{r.inputs['logGroupName']}"
            arns.setdefault(("logs", "log-stream"), []).append(f"{group}:log-stream:{r.inputs['name']}")
        elif r.type == "aws:s3/bucketObjectv2:BucketObjectv2":
            bucket = by_name.get(r.inputs["bucket"])
            name = mock_state(bucket.type, bucket.name, bucket.inputs, region, account)[0] if bucket \
                else r.inputs["bucket"]
            key = r.inputs["key"]
            arns.setdefault(("s3", "object"), []).append(f"arn:{partition_of(region)}:s3:::{name}/{key}")
    arns.setdefault(("kms", "key"), []).extend(_looked_up_keys(stack, account))
    return arns


def _own_request_context(stack: EvaluatedStack, account: str) -> dict[str, str]:
    """The condition keys the stack's own requests carry (the deployer policy requires them, issue 24):
    the permissions boundary its roles declare; on its data key, the stack's tag (the bootstrap tags the
    key it makes for the stack) and, for the grants on it, that a service asks on the deployer's behalf
    (Firehose and DynamoDB make them; the program never calls CreateGrant itself)."""
    context: dict[str, str] = {}
    for role in stack.of_type("aws:iam/role:Role"):
        boundary = role.inputs.get("permissionsBoundary")
        if boundary:
            context["iam:PermissionsBoundary"] = str(boundary).replace(f":{MOCK_ACCOUNT_ID}:", f":{account}:")
    if _looked_up_keys(stack, account):
        context[f"aws:ResourceTag/{STACK_TAG}"] = stack.stack
        context["kms:GrantIsForAWSResource"] = "true"
    return context


def _looked_up_keys(stack: EvaluatedStack, account: str) -> list[str]:
    """The ARNs of the KMS keys the program looks up, as the mock runtime answers them."""
    region = stack.config.get("aws:region") or "us-east-1"
    return [looked_up_key_arn(str(i.args["keyId"]), region, account)
            for i in stack.invokes if i.token == KEY_LOOKUP]


def deployer_findings(stack: EvaluatedStack, documents: Iterable[Mapping[str, Any]], actions: Iterable[str],
                      account: str = MOCK_ACCOUNT_ID) -> list[str]:
    """Each (action, resource) of the stack that `documents` do not allow on the ARN the request carries."""
    documents = list(documents)
    actions = list(actions)
    region = stack.config.get("aws:region") or "us-east-1"
    context = {"aws:RequestedRegion": region, **_own_request_context(stack, account)}
    arns = _stack_arns(stack, account)
    findings = []
    for name in sorted(set(actions)):
        ref = reference_action(name)
        if name == "iam:PassRole":  # judged with the service each role is passed to (deployer tests)
            continue
        if not ref.resource_level:
            if evaluate(documents, name, "*", context) is not Decision.ALLOWED:
                findings.append(f"{name} on *")
            continue
        service = ref.name.split(":", 1)[0]
        for rtype in ref.resource_types:
            for arn in arns.get((service, rtype.name), []):
                carried = request_arn(ref.name, arn, rtype.name)
                if evaluate(documents, ref.name, carried, context) is not Decision.ALLOWED:
                    findings.append(f"{ref.name} on {carried} (resource {arn})")
    return findings


# --- the topic rules' roles ---------------------------------------------------------------------------

def _role_documents(stack: EvaluatedStack, role_arn: str) -> list[dict[str, Any]]:
    role = role_arn.rsplit("/", 1)[-1]
    return [json.loads(p.inputs["policy"]) for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")
            if p.inputs.get("role") == role]


def _arn_of(stack: EvaluatedStack, pulumi_type: str, name_key: str, name: str) -> tuple[str, dict[str, Any]]:
    region = stack.config.get("aws:region") or "us-east-1"
    for r in stack.of_type(pulumi_type):
        if r.inputs.get(name_key) == name:
            return str(mock_state(r.type, r.name, r.inputs, region)[1]["arn"]), r.inputs
    raise LookupError(f"{pulumi_type} {name!r}: not declared by the stack")


def _rule_targets(stack: EvaluatedStack, rule: Mapping[str, Any]) -> list[tuple[str, str, str, str | None]]:
    """(rule action kind, role ARN, target ARN, target's KMS key ARN) of each action of one topic rule."""
    region = stack.config.get("aws:region") or "us-east-1"
    iot = f"arn:{partition_of(region)}:iot:{region}:{MOCK_ACCOUNT_ID}"
    logs = f"arn:{partition_of(region)}:logs:{region}:{MOCK_ACCOUNT_ID}"
    out: list[tuple[str, str, str, str | None]] = []
    for a in rule.get("kineses") or []:
        arn, inputs = _arn_of(stack, "aws:kinesis/stream:Stream", "name", a["streamName"])
        key = inputs.get("kmsKeyId") if inputs.get("encryptionType") == "KMS" else None
        out.append(("kinesis", a["roleArn"], arn, key))
    for a in rule.get("firehoses") or []:
        arn, _ = _arn_of(stack, "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream", "name",
                         a["deliveryStreamName"])
        out.append(("firehose-batch" if a.get("batchMode") else "firehose", a["roleArn"], arn, None))
    for a in rule.get("dynamodbv2s") or []:
        arn, _ = _arn_of(stack, "aws:dynamodb/table:Table", "name", a["putItem"]["tableName"])
        out.append(("dynamodbv2", a["roleArn"], arn, None))
    for a in rule.get("dynamodbs") or []:  # the key's grants hold through DynamoDB only (kms:ViaService)
        arn, _ = _arn_of(stack, "aws:dynamodb/table:Table", "name", a["tableName"])
        out.append(("dynamodb", a["roleArn"], arn, None))
    for a in rule.get("stepFunctions") or []:
        arn, _ = _arn_of(stack, "aws:sfn/stateMachine:StateMachine", "name", a["stateMachineName"])
        out.append(("stepFunctions", a["roleArn"], arn, None))
    for a in rule.get("sqs") or []:
        arn, inputs = _arn_of(stack, "aws:sqs/queue:Queue", "name", a["queueUrl"].rsplit("/", 1)[-1])
        out.append(("sqs", a["roleArn"], arn, inputs.get("kmsMasterKeyId")))
    for a in rule.get("republishes") or []:
        topic = re.sub(r"\$\{[^}]*\}", SAMPLE, a["topic"])
        out.append(("republish", a["roleArn"], f"{iot}:topic/{topic}", None))
    logs_action = (rule.get("errorAction") or {}).get("cloudwatchLogs")
    if logs_action:
        out.append(("cloudwatchLogs", logs_action["roleArn"],
                    f"{logs}:log-group:{logs_action['logGroupName']}", None))
    for table, role_arn in re.findall(r"get_dynamodb\('([^']+)',[^)]*'(arn:[^']+)'\)", rule.get("sql", "")):
        arn, _ = _arn_of(stack, "aws:dynamodb/table:Table", "name", table)
        out.append(("get_dynamodb", role_arn, arn, None))
    return out


def role_requests(kind: str, target_arn: str, key_arn: str | None) -> list[tuple[str, str]]:
    """(IAM action, the ARN the request carries) the role of a rule action of `kind` must be allowed."""
    row = rules()["rule_actions"][kind.removesuffix("-batch")]
    names = row["role_batch_mode"] if kind.endswith("-batch") else row["role"]
    requests = []
    for name in names:
        types = [t.name for t in reference_action(name).resource_types]
        arn = target_arn
        if row["target"] == "log-group" and "log-stream" in types:  # stream-level actions name a stream
            arn, types = f"{target_arn}:log-stream:{SAMPLE}", ["log-stream"]
        requests.append((name, request_arn(name, arn, types[0] if types else row["target"])))
    if key_arn:
        requests += [(name, key_arn) for name in row.get("kms_when_encrypted", [])]
    return requests


def rule_role_findings(stack: EvaluatedStack) -> list[str]:
    """Each request a topic rule's action makes with its role that the role's policy does not allow."""
    findings = []
    for rule in stack.of_type("aws:iot/topicRule:TopicRule"):
        for kind, role_arn, target, key in _rule_targets(stack, rule.inputs):
            documents = _role_documents(stack, role_arn)
            for name, carried in role_requests(kind, target, key):
                if evaluate(documents, name, carried) is not Decision.ALLOWED:
                    row = kind.removesuffix("-batch")
                    findings.append(f"rule {rule.inputs['name']}: {kind} action: role "
                                    f"{role_arn.rsplit('/', 1)[-1]} may not {name} on {carried} "
                                    f"({source('rule_actions', row)})")
    return findings


# --- state machines -----------------------------------------------------------------------------------

_OPTIMIZED = "arn:aws:states:::"
_TARGET_TYPES = {"table": ("aws:dynamodb/table:Table", "name"),
                 "event-bus": ("aws:cloudwatch/eventBus:EventBus", "name")}


def _task_targets(parameters: Mapping[str, Any], path: str) -> list[str]:
    """The names a Task's parameters give at `path` (`TableName`, `Entries[].EventBusName`)."""
    head, _, rest = path.partition(".")
    if head.endswith("[]"):
        return [n for item in parameters.get(head[:-2]) or [] for n in _task_targets(item, rest)]
    value = parameters.get(head)
    return [value] if isinstance(value, str) else []


def state_machine_findings(stack: EvaluatedStack) -> list[str]:
    """Each request a state machine's Task makes with its role that the role's policy does not allow."""
    findings = []
    tasks = rules()["state_machine_tasks"]
    for machine in stack.of_type("aws:sfn/stateMachine:StateMachine"):
        documents = _role_documents(stack, machine.inputs["roleArn"])
        for name, state in json.loads(machine.inputs["definition"])["States"].items():
            resource = state.get("Resource", "")
            if state.get("Type") != "Task" or not resource.startswith(_OPTIMIZED):
                continue
            row = tasks.get(resource.removeprefix(_OPTIMIZED))
            if row is None:
                findings.append(f"state machine {machine.inputs['name']}: state {name}: no guide rule for "
                                f"{resource}; add it to {RULES_FILE.name} (state_machine_tasks)")
                continue
            pulumi_type, key = _TARGET_TYPES[row["target"]]
            for target in _task_targets(state.get("Parameters") or {}, row["parameter"]):
                arn, _ = _arn_of(stack, pulumi_type, key, target)
                for action in row["role"]:
                    if evaluate(documents, action, arn) is not Decision.ALLOWED:
                        findings.append(f"state machine {machine.inputs['name']}: state {name}: role may not "
                                        f"{action} on {arn} ({Source(**row['source'])})")
    return findings


# --- pipes ---------------------------------------------------------------------------------------------

def pipe_findings(stack: EvaluatedStack) -> list[str]:
    """Each pipe whose source batch size exceeds what its target accepts."""
    findings = []
    for pipe in stack.of_type("aws:pipes/pipe:Pipe"):
        limit = pipe_target_max_batch(str(pipe.inputs["target"]))
        for member, params in (pipe.inputs.get("sourceParameters") or {}).items():
            size = (params or {}).get("batchSize")
            if limit is not None and size is not None and size > limit:
                findings.append(f"pipe {pipe.inputs['name']}: {member}.batchSize {size:g} exceeds the "
                                f"{limit} its target accepts ({source('pipe_target_max_batch')})")
    return findings


# --- IoT SQL on decoded protobuf -----------------------------------------------------------------------

def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


@cache
def sixty_four_bit_fields() -> frozenset[str]:
    """Names (proto and JSON spellings) of the Sparkplug Payload's and Metric's 64-bit integer fields."""
    from google.protobuf.descriptor import FieldDescriptor

    from collector.proto import sparkplug_b_pb2

    types = rules()["iot_sql_protobuf_json"]["string_types"]
    wanted = {getattr(FieldDescriptor, f"TYPE_{t.upper()}") for t in types}
    payload = sparkplug_b_pb2.Payload.DESCRIPTOR
    names = set()
    for message in (payload, payload.nested_types_by_name["Metric"]):
        for f in message.fields:
            if f.type in wanted:
                names |= {f.name, _camel(f.name)}
    return frozenset(names)


def protobuf_sql_findings(sql: str) -> list[str]:
    """64-bit fields of a decoded Sparkplug payload used in `sql` other than through `cast(...)`."""
    findings = []
    for name in sorted(sixty_four_bit_fields()):
        for m in re.finditer(rf"(?<![\w.']){name}(?![\w(])", sql):
            before = sql[: m.start()].rstrip()
            if before.lower().endswith("cast(") or before.upper().endswith(" AS"):
                continue
            findings.append(f"{name} at character {m.start()}: a 64-bit integer, a string in protobuf's JSON "
                            f"({source('iot_sql_protobuf_json')}); cast it")
    return findings
