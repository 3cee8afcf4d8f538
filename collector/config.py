"""The collector's config file (`config.yaml` in a device bundle): the single schema for it.

`cli.py devices provision` writes it through `CollectorConfig`; the collector loads it with
`load_config`. Relative file paths resolve against the config file's directory, so a bundle works
wherever it is mounted (the container mounts it read-only at /bundle).
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from collector.consistency import Wiring
from collector.lineprotocol import label_problem
from collector.topics import HOST_ID_PATTERN, HOST_ID_RULE, NAME_PATTERN, NAME_RULE, thing_name
from collector.validation import ConfigError, describe, field_path, read_yaml

CONFIG_FILE = "config.yaml"
CERT_FILE = "device.pem.crt"
KEY_FILE = "private.pem.key"
CA_FILE = "root-ca.pem"
DEFAULT_CIP_PORT = 44818


def bundle_subdir(stack: str, site: str, collector: str) -> str:
    """Where a collector's bundle lives below a bundle root: `<stack>/<site>/<collector>`.

    The same layout on the operator's machine (`cli.py devices provision` writes below `bundles/`) and on
    the edge host (below `edge.bundleRoot`, bind-mounted at /bundle), so a site's bundles are copied
    across as one tree. No ':' (unlike the thing name): Docker's bind syntax splits on it.
    """
    return f"{stack}/{site}/{collector}"

_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_DNS_LABEL}(?:\.{_DNS_LABEL})*$")

Name = Annotated[str, Field(pattern=NAME_PATTERN.pattern, description=NAME_RULE)]
# MQTT payload encoding: the design note's JSON, or Sparkplug B 3.0 protobuf (collector/wire.py).
Encoding = Literal["json", "sparkplug-b"]
ENCODINGS: tuple[Encoding, ...] = ("json", "sparkplug-b")
DEFAULT_ENCODING: Encoding = "json"
Port = Annotated[int, Field(ge=1, le=65535)]
HostId = Annotated[str, Field(pattern=HOST_ID_PATTERN.pattern, description=HOST_ID_RULE)]


def check_host(value: str) -> str:
    """A meter/broker host: an IP address or a DNS name."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.match(value):
            raise ValueError("expected host or IP") from None
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_label(value: str) -> str:
    """A free-text label (InfluxDB tag, DBIRTH field): must read back from InfluxDB exactly as written."""
    problem = label_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class MeterConfig(_Model):
    """One PowerMonitor 500 on the plant network."""

    asset: Name = Field(description="asset id, unique within the collector (Sparkplug device id)")
    breaker: str = Field(min_length=1, max_length=64, description="breaker / feeder label (InfluxDB tag)")
    host: str = Field(description="meter IP address or DNS name")
    port: Port = Field(DEFAULT_CIP_PORT, description="EtherNet/IP TCP port")
    wiring: Wiring = Field(
        "4-wire",
        description="the meter's electrical system: 4-wire (with neutral) or 3-wire (no neutral); "
        "the register-map self-check skips line-to-neutral relations on 3-wire",
    )

    _host = field_validator("host")(check_host)
    _breaker = field_validator("breaker")(check_label)


class MqttConfig(_Model):
    endpoint: str = Field(description="AWS IoT data endpoint (ATS) or a local broker host")
    port: Port = 8883
    ca_file: Path = Field(Path(CA_FILE), description="CA that signed the broker's certificate")
    cert_file: Path = Field(Path(CERT_FILE), description="device certificate (PEM)")
    key_file: Path = Field(Path(KEY_FILE), description="device private key (PEM, mode 0600)")
    keepalive_s: int = Field(30, ge=5, le=1200)
    inflight_window: int = Field(
        256, ge=1, le=10_000, description="QoS 1 publishes awaiting PUBACK at once (replay speed vs memory)"
    )
    encoding: Encoding = Field(
        DEFAULT_ENCODING, description="spBv1.0/ payloads: json (design note) or sparkplug-b (protobuf)"
    )
    primary_host_id: HostId | None = Field(
        None,
        description="sparkplug-b only: the Sparkplug Primary Host Application to wait for (its STATE topic "
        "spBv1.0/STATE/<id>); births and data wait until it is online",
    )
    ddata_qos: Literal[0, 1] = Field(
        0,
        description="sparkplug-b only: DDATA QoS. 0 is the specification's (each row is confirmed by a later "
        "acknowledged packet, no reading lost); 1 is outside the Sparkplug specification",
    )

    _endpoint = field_validator("endpoint")(check_host)

    @model_validator(mode="after")
    def _sparkplug_settings(self) -> MqttConfig:
        if self.encoding != "sparkplug-b":
            if self.primary_host_id is not None:
                raise ValueError("primary_host_id is a Sparkplug setting: it needs encoding: sparkplug-b")
            if self.ddata_qos != 0 and "ddata_qos" in self.model_fields_set:
                raise ValueError("ddata_qos is a Sparkplug setting: it needs encoding: sparkplug-b "
                                 "(json DDATA are always QoS 1)")
        return self


class InfluxConfig(_Model):
    enabled: bool = True
    url: str = Field("http://127.0.0.1:8086", pattern=r"^https?://", description="InfluxDB 1.x base URL")
    database: str = Field("pm500", min_length=1)
    username: str | None = None
    password: SecretStr | None = None
    batch_size: int = Field(500, ge=1, le=50_000, description="max lines per /write")
    flush_interval_s: float = Field(1.0, gt=0, le=60)


class BufferConfig(_Model):
    path: Path = Field(Path("/var/lib/pm500/buffer.sqlite"), description="SQLite store-and-forward file")
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024, description="bound; oldest dropped when full")
    synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL",
        description="SQLite fsync policy: NORMAL survives a process kill, FULL also a power cut (slower)",
    )


class HealthConfig(_Model):
    host: str = Field("127.0.0.1", description="health endpoint bind address (loopback by default)")
    port: int = Field(8081, ge=0, le=65535)


class ShadowConfig(_Model):
    """The named shadow `pm500` (collector/shadow.py): reported state, remote settings."""

    enabled: bool = Field(True, description="report to and take desired settings from the named shadow")
    report_interval_s: float = Field(
        600.0,
        ge=10,
        le=86400,
        description="how often the backlog and last delivery time are reported (each report is a billed "
        "shadow update); settings outcomes, meter and sink changes are reported as they happen",
    )


class CollectorConfig(_Model):
    """Everything one collector needs. `thing_name` is also the MQTT client id and certificate CN."""

    stack: Name
    site: Name
    collector: Name
    thing_name: str
    poll_interval_s: float = Field(1.0, ge=0.1, le=3600)
    meters: list[MeterConfig] = Field(min_length=1)
    mqtt: MqttConfig
    influx: InfluxConfig = InfluxConfig()
    buffer: BufferConfig = BufferConfig()
    health: HealthConfig = HealthConfig()
    shadow: ShadowConfig = ShadowConfig()

    @model_validator(mode="after")
    def _consistent(self) -> CollectorConfig:
        expected = thing_name(self.stack, self.site, self.collector)
        if self.thing_name != expected:
            raise ValueError(f"thing_name must be {expected!r} (stack:site:collector)")
        assets = [m.asset for m in self.meters]
        dupes = sorted({a for a in assets if assets.count(a) > 1})
        if dupes:
            raise ValueError(f"meters: asset ids must be unique, repeated: {', '.join(dupes)}")
        return self

    def resolve_paths(self, base: Path) -> CollectorConfig:
        """Relative bundle/buffer paths made absolute against `base` (the config file's folder)."""
        mqtt = self.mqtt.model_copy(
            update={k: base / getattr(self.mqtt, k) for k in ("ca_file", "cert_file", "key_file")}
        )
        buffer = self.buffer.model_copy(update={"path": base / self.buffer.path})
        return self.model_copy(update={"mqtt": mqtt, "buffer": buffer})

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json")
        if self.influx.password is not None:
            data["influx"]["password"] = self.influx.password.get_secret_value()
        return yaml.safe_dump(data, sort_keys=False)


def parse_config(data: object, source: str) -> CollectorConfig:
    try:
        return CollectorConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, source)) from None


# The collector's own namespace: the CLI and the tools read `PM500_*` variables (docs/ENVIRONMENT.md),
# which an operator may well have exported on the same machine; none of them can start with this.
ENV_PREFIX = "PM500C_"
ENV_NESTING = "__"


def apply_env_overrides(data: object, environ: Mapping[str, str]) -> tuple[object, dict[str, str]]:
    """Overlay `PM500C_<FIELD>[__<SUBFIELD>...]` variables on the loaded YAML (for containers).

    `PM500C_INFLUX__PASSWORD` sets `influx.password`, `PM500C_POLL_INTERVAL_S` sets `poll_interval_s`,
    `PM500C_METERS__0__HOST` sets `meters[0].host`. Values stay strings; the model converts and
    validates them like any YAML value. Returns the new data and {field path: variable name}.
    A variable that points nowhere (no field name, a list index that is not a number or past the end)
    is a ConfigError naming it: an override silently dropped would run the collector with the file's
    value while the operator believes otherwise. Unknown field names fail the model's validation,
    which names the variable too (`load_config`).
    """
    if not isinstance(data, dict):
        return data, {}
    result = copy.deepcopy(data)
    sources: dict[str, str] = {}
    problems: list[str] = []
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX):
            continue
        names = var[len(ENV_PREFIX) :].split(ENV_NESTING)
        if not all(names):
            expected = f"{ENV_PREFIX}<FIELD>[{ENV_NESTING}<SUBFIELD>...]"
            problems.append(f"{var}: no field named (expected {expected})")
            continue
        path = tuple(int(p) if p.isdigit() else p.lower() for p in names)
        problem = _set_path(result, path, environ[var])
        if problem:
            problems.append(f"{var}: {problem}")
        else:
            sources[field_path(path)] = var
    if problems:
        raise ConfigError("\n".join(problems))
    return result, sources


def _set_path(node: Any, path: tuple[str | int, ...], value: str) -> str | None:
    """Set `value` at `path`, creating mappings on the way; the problem if the path points nowhere."""
    for depth, part in enumerate(path):
        here = field_path(path[:depth])
        if isinstance(node, list):
            if not isinstance(part, int):
                return f"{here}: expected a list index, got {part!r}"
            if part >= len(node):
                return (f"index {part} is past the end of {here} "
                        f"({len(node)} item{'s' if len(node) != 1 else ''})")
        elif not isinstance(node, dict):
            return f"{here} is not a mapping"
        if depth == len(path) - 1:
            if isinstance(node, list):
                return f"{field_path(path)}: a whole list item cannot be set from one variable"
            node[part] = value
            return None
        if isinstance(node, dict) and not isinstance(node.get(part), dict | list):
            node[part] = {}
        node = node[part]
    return None


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> CollectorConfig:
    """Load and validate a config file; relative paths resolve against its folder.

    With `environ`, `PM500C_*` variables override file values (see `apply_env_overrides`); an error in
    an overridden field names the variable too.
    """
    data = read_yaml(path, "config file")
    sources: dict[str, str] = {}
    if environ is not None:
        data, sources = apply_env_overrides(data, environ)
    try:
        return parse_config(data, str(path)).resolve_paths(path.parent)
    except ConfigError as e:
        if not sources:
            raise
        named = (_name_variable(line, str(path), sources) for line in str(e).splitlines())
        raise ConfigError("\n".join(named)) from None


def _name_variable(line: str, source: str, sources: Mapping[str, str]) -> str:
    for field, var in sources.items():
        if line.startswith(f"{source}: {field}: "):
            return f"{line} (set by {var})"
    return line
