"""The stack config model: one typed, validated view of `Pulumi.<stack>.yaml` (+ inventory files).

Read once, before any resource is declared. Every problem is reported with the key (or inventory file
and path inside it) and what was expected. The fleet inventory (sites -> collectors -> meters) can be
inline (`pm500:sites`, fine for small stacks) or in files named by `pm500:inventory` (a path or glob,
or a list of them, relative to the project folder; one file per site). Files keep the config that
Pulumi passes to the program in one environment variable small whatever the fleet size.
"""

from __future__ import annotations

import glob
import ipaddress
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from collector.config import DEFAULT_ENCODING, Encoding, HostId, MeterConfig, Name
from collector.topics import NAME_PATTERN, NAME_RULE, check_thing_name_length, thing_name
from collector.validation import ConfigError, describe, read_yaml
from infra.naming import MAX_STACK_NAME_LENGTH

# AWS IoT: a thing group has at most 100 direct child groups (not adjustable); every site group is a
# child of the stack's root group. https://docs.aws.amazon.com/general/latest/gr/iot_device_management.html
MAX_SITES = 100

NAMESPACE = "pm500"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


def _unique(names: list[str], what: str) -> None:
    dupes = sorted(n for n, count in Counter(names).items() if count > 1)
    if dupes:
        raise ValueError(f"{what} must be unique, repeated: {', '.join(dupes)}")


def _edge_ports_unshared(sites: list[SiteSpec]) -> None:
    """Sites may share a Docker host (their containers, volumes and networks are named per site), but
    each site's InfluxDB and Grafana publish fixed ports on `bindAddress`: two sites on one host need
    two addresses, or the second site's containers cannot start."""
    seen: dict[tuple[str, str], str] = {}
    for site in sites:
        if site.edge is None:
            continue
        key = (site.edge.docker_host, site.edge.bind_address)
        if key in seen:
            raise ValueError(
                f"sites[{site.name}].edge: dockerHost {key[0]} with bindAddress {key[1]} is also used by "
                f"site {seen[key]}; both would publish InfluxDB and Grafana on the same ports: give each "
                "site on a shared Docker host its own bindAddress"
            )
        seen[key] = site.name


class CollectorSpec(_Model):
    """One edge box running the pm500 collector; it polls one or more meters."""

    name: Name
    meters: list[MeterConfig] = Field(min_length=1)
    poll_interval_s: float = Field(1.0, ge=0.1, le=3600)
    encoding: Encoding | None = Field(None, description="MQTT payload encoding; default: pm500:encoding")
    primary_host_id: HostId | None = Field(
        None, description="Sparkplug Primary Host Application it waits for; default: pm500:primaryHostId")

    @model_validator(mode="after")
    def _assets_unique(self) -> CollectorSpec:
        _unique([m.asset for m in self.meters], "meters[].asset")
        return self


class EdgeTlsSpec(_Model):
    """PEM files on the edge host (read-only into the containers) for InfluxDB's and Grafana's HTTPS.

    The certificate must name the address users reach the host by and `influxdb` (the site network
    alias the collectors and Grafana use); `ca_path` is the CA that signed it, which they trust."""

    certificate_path: str = Field(pattern=r"^/", description="server certificate (chain) on the edge host")
    private_key_path: str = Field(pattern=r"^/", description="its private key on the edge host")
    ca_path: str = Field(pattern=r"^/", description="the CA certificate that signed it, on the edge host")


class EdgeHostSpec(_Model):
    """The site's edge Docker host (InfluxDB, Grafana and the collector containers run there)."""

    docker_host: str = Field(pattern=r"^(ssh|tcp|unix)://",
                             description="Docker endpoint, e.g. ssh://pm500@edge.example")
    bundle_root: str = Field("/opt/pm500/bundles", pattern=r"^/",
                             description="where operators copy CLI bundles")
    bind_address: str = Field("127.0.0.1", description="interface InfluxDB/Grafana ports bind to")
    tls: EdgeTlsSpec | None = Field(None, description="HTTPS for InfluxDB, Grafana; required beyond loopback")

    @model_validator(mode="after")
    def _beyond_loopback_needs_tls(self) -> EdgeHostSpec:
        try:
            loopback = ipaddress.ip_address(self.bind_address).is_loopback
        except ValueError:
            raise ValueError(f"bindAddress {self.bind_address!r}: expected an IP address") from None
        if not loopback and self.tls is None:
            raise ValueError(
                f"bindAddress {self.bind_address} is beyond loopback: InfluxDB and Grafana would serve "
                "passwords and plant data in clear text; set edge.tls (certificatePath, privateKeyPath, "
                "caPath on the edge host) or bind 127.0.0.1 and reach them through an SSH tunnel")
        return self


class SiteSpec(_Model):
    name: Name
    collectors: list[CollectorSpec] = Field(min_length=1)
    edge: EdgeHostSpec | None = None

    @model_validator(mode="after")
    def _collectors_unique(self) -> SiteSpec:
        _unique([c.name for c in self.collectors], "collectors[].name")
        return self


class KinesisSpec(_Model):
    capacity_mode: Literal["PROVISIONED", "ON_DEMAND"] = "PROVISIONED"
    shards: int = Field(1, ge=1, le=500, description="only for PROVISIONED")
    retention_hours: int = Field(24, ge=24, le=8760)


class ArchiveSpec(_Model):
    buffer_interval_s: int = Field(300, ge=60, le=900)
    buffer_size_mb: int = Field(64, ge=64, le=128, description="dynamic partitioning needs >= 64 MiB")
    noncurrent_version_expiry_days: int = Field(30, ge=1)
    active_partition_limit: int = Field(
        500, ge=1, le=5000,
        description="the account's Firehose active-partition quota (default 500); raise after AWS raises it",
    )


# EventBridge Pipes: a pipe cannot batch more than its target accepts; an event bus takes 10
# ("Amazon EventBridge Pipes batching and concurrency", EventBridge User Guide; the row
# `pipe_target_max_batch` of preflight/service_guide_rules.yaml, which tests/infra/test_guide_rules.py
# holds this figure to).
EVENT_BUS_MAX_BATCH = 10


class EventPipeSpec(_Model):
    """The Kinesis -> event bus pipe (`features.eventBridgePipe`): how it batches."""

    batch_size: int = Field(EVENT_BUS_MAX_BATCH, ge=1, description="records per batch, at most the bus's 10")
    maximum_batching_window_s: int = Field(5, ge=0, le=300, description="seconds a batch may wait to fill")

    @field_validator("batch_size")
    @classmethod
    def _fits_the_bus(cls, size: int) -> int:
        if size > EVENT_BUS_MAX_BATCH:
            raise ValueError(
                f"{size}: an EventBridge event bus takes at most {EVENT_BUS_MAX_BATCH} events per batch, "
                "and a pipe cannot batch more than its target accepts (EventBridge User Guide, "
                "\"Amazon EventBridge Pipes batching and concurrency\")"
            )
        return size


class FeaturesSpec(_Model):
    event_bridge_pipe: bool = False
    fleet: bool = Field(True, description="presence from lifecycle events, collector reports, offline and "
                        "recovered events on the stack's bus: what `cli.py fleet status` reads")
    alarm_events: bool = Field(False, description="meter alarm/output events -> the stack's EventBridge bus")
    latest_value_table: bool = False
    edge: bool = False
    grafana: bool = True


class PresenceSpec(_Model):
    """The fleet view (`features.fleet`, infra/presence.py): when a disconnected collector is offline."""

    offline_after_s: int = Field(
        900, ge=10, le=7 * 24 * 3600,
        description="seconds a collector may stay disconnected before pm500.collector.offline is put on the "
        "stack's bus (once per disconnection; pm500.collector.recovered when it returns)",
    )


class ProvisioningSpec(_Model):
    """Fleet provisioning by claim certificate: off unless `fleet` is true, and then always behind a
    pre-provisioning hook: the stack's own (`infra/provisioning_hook.py`: declared collectors only,
    never onto a live certificate) or, named by ARN, yours."""

    fleet: bool = Field(False, description="enable the stack's fleet provisioning template")
    pre_provisioning_hook_lambda_arn: str | None = Field(
        None, pattern=r"^arn:aws[a-z-]*:lambda:", description="your own hook instead of the stack's")

    @model_validator(mode="after")
    def _hook_needs_fleet(self) -> ProvisioningSpec:
        if self.pre_provisioning_hook_lambda_arn and not self.fleet:
            raise ValueError("preProvisioningHookLambdaArn: set provisioning.fleet to true to use a hook")
        return self


class EdgeSettingsSpec(_Model):
    influx_image: str = "influxdb:1.8"
    grafana_image: str = "grafana/grafana-oss:11.3.0"
    influx_database: str = "pm500"
    ecr_keep_images: int = Field(10, ge=1, le=1000)


class StackConfig(_Model):
    """Everything the program needs, validated. `stack` is the Pulumi stack name (every name's prefix)."""

    stack: Name
    environment: Name
    sites: list[SiteSpec] = Field(min_length=1)
    kinesis: KinesisSpec = KinesisSpec()
    archive: ArchiveSpec = ArchiveSpec()
    features: FeaturesSpec = FeaturesSpec()
    event_pipe: EventPipeSpec = EventPipeSpec()
    presence: PresenceSpec = PresenceSpec()
    provisioning: ProvisioningSpec = ProvisioningSpec()
    edge: EdgeSettingsSpec = EdgeSettingsSpec()
    deletion_protection: bool = False
    encoding: Encoding = Field(DEFAULT_ENCODING, description="MQTT payload encoding of its collectors")
    primary_host_id: HostId | None = Field(
        None, description="the Sparkplug Primary Host Application its sparkplug-b collectors wait for")
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$",
                               description="aws:region, e.g. eu-west-1")
    secret_keys: frozenset[str] = Field(frozenset(), description="pm500 keys Pulumi holds as secrets")

    @field_validator("sites")
    @classmethod
    def _sites_fit_one_root_group(cls, sites: list[SiteSpec]) -> list[SiteSpec]:
        if len(sites) > MAX_SITES:
            raise ValueError(
                f"{len(sites)} sites; AWS IoT allows at most {MAX_SITES} direct child groups per thing "
                "group (one site group each, under the stack's root group): split the fleet into stacks"
            )
        return sites

    @model_validator(mode="after")
    def _sites_unique(self) -> StackConfig:
        _unique([s.name for s in self.sites], "sites[].name")
        for site in self.sites:
            for c in site.collectors:
                if c.primary_host_id is not None and self.collector_encoding(c) != "sparkplug-b":
                    raise ValueError(f"sites[{site.name}].collectors[{c.name}].primaryHostId is a Sparkplug "
                                     "setting: it needs encoding sparkplug-b")
        if self.features.edge:
            missing = [s.name for s in self.sites if s.edge is None]
            if missing:
                raise ValueError(f"features.edge is on but sites have no edge host: {', '.join(missing)}")
            _edge_ports_unshared(self.sites)
        # Firehose keeps one active partition per site and day; around midnight UTC (and when buffered
        # data is replayed) two days per site are open at once.
        worst_case = 2 * len(self.sites)
        if worst_case > self.archive.active_partition_limit:
            raise ValueError(
                f"{len(self.sites)} sites need up to {worst_case} active Firehose partitions (site x day), "
                f"above archive.activePartitionLimit={self.archive.active_partition_limit}: ask AWS to raise "
                "the delivery stream's active-partition quota, then raise archive.activePartitionLimit"
            )
        return self

    def collector_encoding(self, collector: CollectorSpec) -> Encoding:
        """What a collector's bundle sets as `mqtt.encoding`: its own setting, else the stack's."""
        return collector.encoding or self.encoding

    def collector_primary_host(self, collector: CollectorSpec) -> str | None:
        """What a collector's bundle sets as `mqtt.primary_host_id`: its own setting, else the stack's,
        for a sparkplug-b collector (a json collector has no Sparkplug host)."""
        if self.collector_encoding(collector) != "sparkplug-b":
            return None
        return collector.primary_host_id or self.primary_host_id

    @property
    def primary_hosts(self) -> frozenset[str]:
        """The Sparkplug Primary Host Applications this stack's collectors wait for."""
        hosts = (self.collector_primary_host(c) for s in self.sites for c in s.collectors)
        return frozenset(h for h in hosts if h is not None)

    @property
    def encodings(self) -> frozenset[Encoding]:
        """The encodings this stack's collectors publish (the topic rules decode each of them)."""
        return frozenset(self.collector_encoding(c) for s in self.sites for c in s.collectors)

    @property
    def collector_count(self) -> int:
        return sum(len(s.collectors) for s in self.sites)

    def is_secret(self, key: str) -> bool:
        """Whether `pm500:<key>` is a Pulumi secret: anything exported from it must stay secret."""
        return key in self.secret_keys


# Keys under the `pm500:` namespace and the StackConfig field each feeds.
_SCALAR_KEYS = {
    "environment": "environment",
    "deletionProtection": "deletionProtection",
    "encoding": "encoding",
    "primaryHostId": "primaryHostId",
}
_OBJECT_KEYS = {
    "sites": "sites",
    "kinesis": "kinesis",
    "archive": "archive",
    "features": "features",
    "eventPipe": "eventPipe",
    "presence": "presence",
    "provisioning": "provisioning",
    "edge": "edge",
}
KNOWN_KEYS = frozenset({*_SCALAR_KEYS, *_OBJECT_KEYS, "inventory"})


def _decode(key: str, raw: Any) -> Any:
    """Pulumi passes objects (and lists) as JSON text and scalars as text: decode the JSON ones."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if not text.startswith(("{", "[")) and text not in ("true", "false"):
        return raw
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{NAMESPACE}:{key}: not valid JSON ({e.msg} at character {e.pos})") from None


def _read_inventory(patterns: Any, project_dir: Path) -> list[tuple[SiteSpec, Path]]:
    """The sites of the inventory files, in file order, each with the file that defines it."""
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise ConfigError(f"{NAMESPACE}:inventory: expected a path or glob, or a list of them")
    sites: list[tuple[SiteSpec, Path]] = []
    seen: dict[str, Path] = {}
    for pattern in patterns:
        files = sorted(glob.glob(str(project_dir / pattern)))
        if not files:
            raise ConfigError(f"{NAMESPACE}:inventory: {pattern!r} matches no file under {project_dir}")
        for name in files:
            path = Path(name)
            if path in seen.values():
                continue  # two patterns naming the same file
            site = _load_site_file(path, project_dir)
            if site.name in seen:
                raise ConfigError(
                    f"{_shown(path, project_dir)}: name: site {site.name!r} is also defined in "
                    f"{_shown(seen[site.name], project_dir)}"
                )
            seen[site.name] = path
            sites.append((site, path))
    return sites


def _shown(path: Path, project_dir: Path) -> Path:
    return path.relative_to(project_dir) if path.is_relative_to(project_dir) else path


def _load_site_file(path: Path, project_dir: Path) -> SiteSpec:
    """One inventory file = one site."""
    shown = _shown(path, project_dir)
    data = read_yaml(path, "inventory file", shown)
    try:
        return SiteSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, str(shown))) from None


def parse_stack_config(values: Mapping[str, Any], *, stack: str, project_dir: Path,
                       region: str | None = None, secret_keys: frozenset[str] = frozenset()) -> StackConfig:
    """Validate the `pm500:*` config of one stack. `values` maps keys without the namespace to raw values.

    `region` is `aws:region`; `secret_keys` the pm500 keys (without namespace) Pulumi marks secret.
    """
    if not NAME_PATTERN.match(stack):
        raise ConfigError(f"stack name {stack!r}: {stack_name_rule()}")
    if len(stack) > MAX_STACK_NAME_LENGTH:
        raise ConfigError(
            f"stack name {stack!r}: at most {MAX_STACK_NAME_LENGTH} characters (AWS IoT provisioning "
            "template names, pm500-<stack>-claim, hold 36)"
        )
    unknown = sorted(set(values) - KNOWN_KEYS)
    if unknown:
        known = ", ".join(sorted(KNOWN_KEYS))
        raise ConfigError(f"{NAMESPACE}:{unknown[0]}: unknown config key (known: {known})")
    data: dict[str, Any] = {"stack": stack, "environment": stack, "region": region, "secretKeys": secret_keys}
    for key, field in {**_SCALAR_KEYS, **_OBJECT_KEYS}.items():
        if key in values:
            data[field] = _decode(key, values[key])
    if "inventory" in values:
        if "sites" in values:
            raise ConfigError(f"{NAMESPACE}:inventory: set either pm500:sites or pm500:inventory, not both")
        inventory = _read_inventory(_decode("inventory", values["inventory"]), project_dir)
        data["sites"] = [site for site, _ in inventory]
    elif "sites" not in values:
        raise ConfigError(
            f"{NAMESPACE}:sites: required (inline sites) unless {NAMESPACE}:inventory names inventory files"
        )
    try:
        cfg = StackConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe_stack_error(e)) from None
    if "inventory" in values:
        where = {site.name: f"{_shown(path, project_dir)}: " for site, path in inventory}
    else:
        where = {site.name: f"{NAMESPACE}:sites[{i}]." for i, site in enumerate(cfg.sites)}
    _check_thing_names(cfg, where)
    return cfg


def _check_thing_names(cfg: StackConfig, where: Mapping[str, str]) -> None:
    """Every thing name must fit a certificate CN: the CLI must be able to provision what `up` creates.

    `where` maps a site to the prefix naming it in messages (`pm500:sites[0].` or `inventory/x.yaml: `).
    """
    for site in cfg.sites:
        for j, collector in enumerate(site.collectors):
            try:
                check_thing_name_length(thing_name(cfg.stack, site.name, collector.name))
            except ValueError as e:
                raise ConfigError(f"{where[site.name]}collectors[{j}].name: {e}") from None


def _describe_stack_error(error: ValidationError) -> str:
    """Name the config key as the operator writes it: `pm500:kinesis.shards`, `aws:region`."""
    lines = []
    for line in describe(error, NAMESPACE, joiner=":").splitlines():
        if line.startswith(f"{NAMESPACE}:region:"):
            line = "aws:region:" + line.removeprefix(f"{NAMESPACE}:region:")
        lines.append(line)
    return "\n".join(lines)


def stack_name_rule() -> str:
    return f"stack names must match {NAME_PATTERN.pattern} ({NAME_RULE})"
