"""Evaluate the real Pulumi program on Pulumi's mock runtime, with a stack's real config file.

No Pulumi CLI or provider plugin runs here: the program runs exactly as the language host would run it
(`runpy` of the `infra/` folder, config handed over the way the engine hands it: a `namespace:key` map
with objects as JSON text, plus the list of secret keys), and every resource registration and invoke is
answered by `pulumi.runtime.set_mocks` with plausible ids and ARNs (a looked-up KMS key too:
`looked_up_key_id`); every registration and invoke is recorded. Used by tests, benchmarks, the
policy-pack tests and the local demo (which seeds moto with the thing and IoT policy from here).

Pulumi's runtime state (settings, root stack, config) lives in context variables; each evaluation runs
in its own thread, which starts with a fresh context and its own event loop, so a process can evaluate
any number of stacks one after another.

CLI: `python -m preflight.mock_runtime <stack> [--project-dir DIR]` prints the outputs as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import runpy
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROJECT = "pm500"
MOCK_ACCOUNT_ID = "123456789012"
# The invoke by which the program finds its data key, the bootstrap's, by its alias (infra/data_routes.py).
KEY_LOOKUP = "aws:kms/getKey:getKey"
DEFAULT_PLACEHOLDER_SECRET = "mock-secret-value"  # noqa: S105 - stands in for an encrypted config value


class StackFileError(ValueError):
    """`Pulumi.<stack>.yaml` missing or malformed (named, with the key)."""


@dataclass(frozen=True)
class RegisteredResource:
    """One resource registration as the engine would receive it."""

    type: str
    name: str
    urn: str
    id: str
    inputs: dict[str, Any]
    parent: str | None  # parent URN (None: the stack itself)
    custom: bool
    dependencies: tuple[str, ...] = ()  # URNs it waits for (`depends_on` and Output-valued inputs)
    protect: bool = False  # the `protect` resource option
    import_id: str = ""  # the `import` resource option: the id of an existing resource to adopt


@dataclass(frozen=True)
class Invoke:
    """One data-source lookup (invoke) the program made, e.g. `aws:kms/getKey:getKey` with its args."""

    token: str
    args: dict[str, Any]


@dataclass
class EvaluatedStack:
    """Resolved stack outputs plus every registered resource (components included)."""

    stack: str
    config: dict[str, str]
    secret_keys: list[str]
    outputs: dict[str, Any]
    secret_outputs: frozenset[str]
    resources: list[RegisteredResource] = field(default_factory=list)
    invokes: list[Invoke] = field(default_factory=list)

    def of_type(self, type_: str) -> list[RegisteredResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> RegisteredResource:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one {type_} {name or ''}, found {len(found)}")
        return found[0]

    def by_urn(self) -> dict[str, RegisteredResource]:
        return {r.urn: r for r in self.resources}

    def count_by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resources:
            counts[r.type] = counts.get(r.type, 0) + 1
        return counts


# --- config, the way the language host passes it -----------------------------------------------------

def stack_file(stack: str, project_dir: Path) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


def load_stack_config_file(stack: str, project_dir: Path | None = None,
                           secrets: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """`(config, secret_keys)` as the engine hands them to the program for `Pulumi.<stack>.yaml`.

    Keys without a namespace get the project's; scalars become text, objects and lists JSON text.
    `secure:` values can only be decrypted by the Pulumi CLI: pass their plaintext in `secrets` (else a
    placeholder is used); either way the key is listed as secret, exactly as the engine would.
    """
    project_dir = project_dir or PROJECT_DIR
    path = stack_file(stack, project_dir)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise StackFileError(f"{path.name}: cannot read stack file: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise StackFileError(f"{path.name}: not valid YAML: {e}") from None
    raw = doc.get("config", {}) if isinstance(doc, dict) else None
    if not isinstance(raw, dict):
        raise StackFileError(f"{path.name}: config: expected a map of config keys")
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in raw.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            secret_keys.append(full)
            config[full] = (secrets or {}).get(full, DEFAULT_PLACEHOLDER_SECRET)
        else:
            config[full] = value if isinstance(value, str) else json.dumps(value)
    return config, secret_keys


def language_host_config_json(config: Mapping[str, str]) -> str:
    """The `PULUMI_CONFIG` environment string the engine would set (Linux caps one at 128 KiB)."""
    return json.dumps(dict(config))


# --- mocks -------------------------------------------------------------------------------------------

def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:7]


_IOT = "arn:{partition}:iot:{region}:{account}:"
ARN_FORMATS: dict[str, str] = {
    "aws:iot/thingType:ThingType": _IOT + "thingtype/{name}",
    "aws:iot/thingGroup:ThingGroup": _IOT + "thinggroup/{name}",
    "aws:iot/thing:Thing": _IOT + "thing/{name}",
    "aws:iot/policy:Policy": _IOT + "policy/{name}",
    "aws:iot/provisioningTemplate:ProvisioningTemplate": _IOT + "provisioningtemplate/{name}",
    "aws:iot/topicRule:TopicRule": _IOT + "rule/{name}",
    "aws:iam/role:Role": "arn:{partition}:iam::{account}:role/{name}",
    "aws:iam/policy:Policy": "arn:{partition}:iam::{account}:policy/{name}",
    "aws:kms/key:Key": "arn:{partition}:kms:{region}:{account}:key/{name}",
    "aws:kms/alias:Alias": "arn:{partition}:kms:{region}:{account}:{name}",
    "aws:kinesis/stream:Stream": "arn:{partition}:kinesis:{region}:{account}:stream/{name}",
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream":
        "arn:{partition}:firehose:{region}:{account}:deliverystream/{name}",
    "aws:s3/bucket:Bucket": "arn:{partition}:s3:::{name}",
    "aws:cloudwatch/logGroup:LogGroup": "arn:{partition}:logs:{region}:{account}:log-group:{name}",
    "aws:cloudwatch/eventBus:EventBus": "arn:{partition}:events:{region}:{account}:event-bus/{name}",
    "aws:pipes/pipe:Pipe": "arn:{partition}:pipes:{region}:{account}:pipe/{name}",
    "aws:sqs/queue:Queue": "arn:{partition}:sqs:{region}:{account}:{name}",
    "aws:dynamodb/table:Table": "arn:{partition}:dynamodb:{region}:{account}:table/{name}",
    "aws:ecr/repository:Repository": "arn:{partition}:ecr:{region}:{account}:repository/{name}",
    "aws:sfn/stateMachine:StateMachine": "arn:{partition}:states:{region}:{account}:stateMachine:{name}",
    "aws:lambda/function:Function": "arn:{partition}:lambda:{region}:{account}:function:{name}",
}


# Pulumi type -> (IAM service prefix, the reference's resource type) for resources that have an ARN.
IAM_RESOURCE_TYPES = {
    "aws:iot/thingType:ThingType": ("iot", "thingtype"),
    "aws:iot/thingGroup:ThingGroup": ("iot", "thinggroup"),
    "aws:iot/thing:Thing": ("iot", "thing"),
    "aws:iot/policy:Policy": ("iot", "policy"),
    "aws:iot/provisioningTemplate:ProvisioningTemplate": ("iot", "provisioningtemplate"),
    "aws:iot/topicRule:TopicRule": ("iot", "rule"),
    "aws:iam/role:Role": ("iam", "role"),
    "aws:kms/key:Key": ("kms", "key"),
    "aws:kms/alias:Alias": ("kms", "alias"),
    "aws:kinesis/stream:Stream": ("kinesis", "stream"),
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": ("firehose", "deliverystream"),
    "aws:cloudwatch/logGroup:LogGroup": ("logs", "log-group"),
    "aws:cloudwatch/eventBus:EventBus": ("events", "event-bus"),
    "aws:pipes/pipe:Pipe": ("pipes", "pipe"),
    "aws:dynamodb/table:Table": ("dynamodb", "table"),
    "aws:ecr/repository:Repository": ("ecr", "repository"),
    "aws:lambda/function:Function": ("lambda", "function"),
    "aws:s3/bucket:Bucket": ("s3", "bucket"),
    "aws:sqs/queue:Queue": ("sqs", "queue"),
    "aws:sfn/stateMachine:StateMachine": ("states", "statemachine"),
}


def partition_of(region: str) -> str:
    """The partition AWS puts `region` in (what `aws.get_partition` answers there)."""
    for prefix, partition in (("cn-", "aws-cn"), ("us-gov-", "aws-us-gov"), ("us-isob-", "aws-iso-b"),
                              ("us-iso-", "aws-iso")):
        if region.startswith(prefix):
            return partition
    return "aws"


def _physical_name(typ: str, logical: str, inputs: Mapping[str, Any]) -> str:
    """The name the provider would use: the explicit one, else Pulumi-style `<logical>-<7 chars>`."""
    for key in ("name", "bucket"):
        value = inputs.get(key)
        if isinstance(value, str) and value:
            return value
    if typ == "aws:kms/key:Key":
        return str(uuid.uuid5(uuid.NAMESPACE_URL, logical))
    return f"{logical.replace('/', '-')}-{_short_hash(logical)}"


def mock_state(typ: str, logical: str, inputs: Mapping[str, Any], region: str,
               account: str = MOCK_ACCOUNT_ID) -> tuple[str, dict[str, Any]]:
    """`(id, state)` a provider would plausibly return: inputs plus name, ARN and type-specific ids."""
    state = dict(inputs)
    name = _physical_name(typ, logical, inputs)
    arn_format = ARN_FORMATS.get(typ)
    if arn_format:
        state["arn"] = arn_format.format(partition=partition_of(region), region=region, account=account,
                                         name=name)
    if typ == "aws:s3/bucket:Bucket":
        state["bucket"] = name
    elif typ == "aws:kms/key:Key":
        state["keyId"] = name
    elif typ == "aws:sqs/queue:Queue":
        state["url"] = f"https://sqs.{region}.amazonaws.com/{account}/{name}"
    elif typ == "aws:ecr/repository:Repository":
        state["repositoryUrl"] = f"{account}.dkr.ecr.{region}.amazonaws.com/{name}"
    elif typ == "docker:index/image:Image":  # the pushed digest follows the (content-addressed) tag
        image_name = str(inputs.get("imageName", logical))
        digest = hashlib.sha256(image_name.encode()).hexdigest()
        state["repoDigest"] = f"{image_name.rsplit(':', 1)[0]}@sha256:{digest}"
    elif typ == "docker:index/remoteImage:RemoteImage":
        state["imageId"] = f"sha256:{hashlib.sha256(str(inputs.get('name')).encode()).hexdigest()}"
    elif typ.startswith("random:"):
        state.setdefault("result", f"mock-{_short_hash(logical)}{_short_hash(logical[::-1])}")
    if "name" not in state and typ.startswith("aws:"):
        state["name"] = name
    return name, state


def looked_up_key_id(key_id: str) -> str:
    """The key id the mock runtime answers `aws.kms.get_key(key_id=...)` with: for an alias (the program
    looks its data key up by `alias/pm500-<stack>-data`), a UUID like AWS's derived from the alias, so a
    replay that makes that alias (`sandbox.plan_replay`) can put the real key in its place; a key id or key
    ARN stands for itself."""
    if key_id.startswith("alias/"):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, key_id))
    return key_id.rsplit("/", 1)[-1]


def looked_up_key_arn(key_id: str, region: str, account: str = MOCK_ACCOUNT_ID) -> str:
    """The ARN the mock runtime answers `aws.kms.get_key(key_id=...)` with, in `account`."""
    return f"arn:{partition_of(region)}:kms:{region}:{account}:key/{looked_up_key_id(key_id)}"


def _make_mocks(region: str, account: str, record_invoke: Callable[[Invoke], None]) -> Any:
    import pulumi

    class StackMocks(pulumi.runtime.Mocks):
        """Plausible provider answers; records each registration's inputs and each invoke for the caller."""

        def __init__(self) -> None:
            self.local = threading.local()

        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
            self.local.inputs = dict(args.inputs)
            if not args.custom:
                return None, {}
            return mock_state(args.typ, args.name, args.inputs, region, account)

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]]]:
            function = args.token  # the invoked function, e.g. aws:iot/getEndpoint:getEndpoint
            record_invoke(Invoke(function, dict(args.args)))
            if function == KEY_LOOKUP:  # a key made elsewhere: the bootstrap's
                key_id = looked_up_key_id(str(args.args["keyId"]))
                return {"id": key_id, "keyId": key_id, "awsAccountId": account, "enabled": True,
                        "arn": looked_up_key_arn(str(args.args["keyId"]), region, account),
                        "keyManager": "CUSTOMER", "keyState": "Enabled", "keyUsage": "ENCRYPT_DECRYPT",
                        "keySpec": "SYMMETRIC_DEFAULT", "origin": "AWS_KMS", "multiRegion": False}, []
            if function == "aws:index/getCallerIdentity:getCallerIdentity":
                return {"accountId": account, "arn": f"arn:{partition_of(region)}:iam::{account}:user/mock",
                        "userId": "AIDAMOCKUSER", "id": account}, []
            if function == "aws:iot/getEndpoint:getEndpoint":
                return {"endpointAddress": f"a1b2c3d4e5f6g7-ats.iot.{region}.amazonaws.com",
                        "endpointType": args.args.get("endpointType"), "id": region}, []
            if function == "aws:index/getPartition:getPartition":
                partition = partition_of(region)
                suffix = {"aws-cn": "amazonaws.com.cn", "aws-iso": "c2s.ic.gov", "aws-iso-b": "sc2s.sgov.gov"}
                return {"partition": partition, "dnsSuffix": suffix.get(partition, "amazonaws.com"),
                        "id": partition}, []
            if function == "aws:index/getRegion:getRegion":
                return {"region": region, "name": region, "id": region}, []
            if function == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
                return {"userName": "AWS", "password": "mock-ecr-token", "authorizationToken": "bW9jaw==",
                        "proxyEndpoint": f"https://{account}.dkr.ecr.{region}.amazonaws.com",
                        "expiresAt": "2030-01-01T00:00:00Z", "id": region}, []
            raise NotImplementedError(f"mock_runtime: no mock for invoke {args.token}")

    return StackMocks()


def _make_monitor(mocks: Any, record: Callable[[RegisteredResource], None]) -> Any:
    from pulumi.runtime.mocks import MockMonitor

    class RecordingMonitor(MockMonitor):
        """The stock mock monitor, also recording parent and inputs of every registration."""

        def RegisterResource(self, request: Any) -> Any:
            response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
            if request.type != "pulumi:pulumi:Stack":
                urn = self.make_urn(request.parent, request.type, request.name)
                reg = self.resources.get(urn)
                record(RegisteredResource(
                    type=request.type, name=request.name, urn=urn, id=(reg.id if reg else "") or "",
                    inputs=getattr(mocks.local, "inputs", {}), parent=request.parent or None,
                    custom=bool(request.custom), dependencies=tuple(request.dependencies),
                    protect=bool(request.protect), import_id=request.importId,
                ))
            return response

    return RecordingMonitor(mocks)


# --- evaluation --------------------------------------------------------------------------------------

def _resolve_outputs(root: Any) -> tuple[dict[str, Any], frozenset[str]]:
    import pulumi
    from pulumi.runtime.sync_await import _sync_await

    values: dict[str, Any] = {}
    secret: set[str] = set()
    for name, value in root.outputs.items():
        if not _has_outputs(value):  # plain data (e.g. 10,000 collector entries): nothing to await
            values[name] = value
            continue
        out = pulumi.Output.from_input(value)
        values[name] = _sync_await(out.future())
        if _sync_await(out.is_secret()):
            secret.add(name)
    return values, frozenset(secret)


_PLAIN = (str, int, float, bool, type(None))


def _has_outputs(value: Any) -> bool:
    """Whether `value` holds anything to await; iterative, as it walks every collector's entry."""
    import pulumi

    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, _PLAIN):
            continue
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
        elif isinstance(item, pulumi.Output) or asyncio.isfuture(item) or asyncio.iscoroutine(item):
            return True
    return False


def _evaluate_here(stack: str, project_dir: Path, program_dir: Path, config: dict[str, str],
                   secret_keys: list[str], region: str, logger: logging.Logger | None) -> EvaluatedStack:
    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    resources: list[RegisteredResource] = []
    invokes: list[Invoke] = []
    lock = threading.Lock()

    def record(resource: RegisteredResource) -> None:
        with lock:
            resources.append(resource)

    def record_invoke(invoke: Invoke) -> None:
        with lock:
            invokes.append(invoke)

    mocks = _make_mocks(region, MOCK_ACCOUNT_ID, record_invoke)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, logger=logger,
                             monitor=_make_monitor(mocks, record))
    settings.SETTINGS.root_directory = str(project_dir)
    pulumi.runtime.set_all_config(config, secret_keys)

    def program() -> None:
        runpy.run_path(str(program_dir), run_name="__main__")

    _sync_await(run_pulumi_func(program))
    outputs, secret_outputs = _resolve_outputs(settings.get_root_resource())
    return EvaluatedStack(stack=stack, config=config, secret_keys=secret_keys, outputs=outputs,
                          secret_outputs=secret_outputs, resources=resources, invokes=invokes)


def evaluate_stack(stack: str, project_dir: Path | None = None, *,
                   config: Mapping[str, str] | None = None, secret_keys: Iterable[str] | None = None,
                   secrets: Mapping[str, str] | None = None,
                   program_dir: Path | None = None, logger: logging.Logger | None = None) -> EvaluatedStack:
    """Run the program for `stack` on the mock runtime and return its outputs and resources.

    By default the config is the real `Pulumi.<stack>.yaml` of `project_dir` (the repo); `config` and
    `secret_keys` replace it (tests of bad or generated configs). `program_dir` defaults to
    `<repo>/infra` (the project's `main`). Errors raised by the program (e.g. `ConfigError`) propagate.
    The program's `pulumi.log` messages go to `logger` (default: the root logger, as Pulumi's mocks do).
    """
    project_dir = (project_dir or PROJECT_DIR).resolve()
    if config is None:
        config, keys = load_stack_config_file(stack, project_dir, secrets)
    else:
        config, keys = dict(config), list(secret_keys or [])
    region = config.get("aws:region") or "us-east-1"
    program = program_dir or PROJECT_DIR / "infra"
    result: list[EvaluatedStack] = []
    errors: list[BaseException] = []

    def worker() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            result.append(_evaluate_here(stack, project_dir, program, dict(config), keys, region, logger))
        except BaseException as e:
            errors.append(e)
        finally:
            # Pulumi's mock monitor runs each invoke on this loop's default executor and gives every
            # executor thread an event loop of its own that nothing closes. Joined here, the threads
            # free those loops now; left idle, the loops were collected at interpreter exit, when
            # their sockets may already be gone ("Exception ignored ... Invalid file descriptor: -1").
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    # A fresh thread = a fresh contextvars context and event loop = fresh Pulumi runtime state.
    thread = threading.Thread(target=worker, name=f"pulumi-mock-{stack}")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("stack")
    parser.add_argument("--project-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    evaluated = evaluate_stack(args.stack, args.project_dir)
    report = {"outputs": evaluated.outputs, "secretOutputs": sorted(evaluated.secret_outputs),
              "resourceCounts": evaluated.count_by_type()}
    json.dump(report, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
