"""The stack config model: one typed, validated view of `Pulumi.<stack>.yaml` (+ inventory files).

Read once, before any resource is declared. Every problem is reported with the key (or inventory file
and path inside it) and what was expected. The fleet inventory (sites -> collectors -> meters) can be
inline (`pm500:sites`, fine for small stacks) or in files named by `pm500:inventory` (a path or glob,
or a list of them, relative to the project folder; one file per site). Files keep the config that
Pulumi passes to the program in one environment variable small whatever the fleet size.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from collector.config import MeterConfig, Name
from collector.topics import NAME_PATTERN, NAME_RULE
from collector.validation import ConfigError, describe

NAMESPACE = "pm500"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


def _unique(names: list[str], what: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} must be unique, repeated: {', '.join(dupes)}")


class CollectorSpec(_Model):
    """One edge box running the pm500 collector; it polls one or more meters."""

    name: Name
    meters: list[MeterConfig] = Field(min_length=1)
    poll_interval_s: float = Field(1.0, ge=0.1, le=3600)

    @model_validator(mode="after")
    def _assets_unique(self) -> CollectorSpec:
        _unique([m.asset for m in self.meters], "meters[].asset")
        return self


class EdgeHostSpec(_Model):
    """The site's edge Docker host (InfluxDB, Grafana and the collector containers run there)."""

    docker_host: str = Field(pattern=r"^(ssh|tcp|unix)://", description="Docker endpoint, e.g. ssh://pm500@edge.example")
    bundle_root: str = Field("/opt/pm500/bundles", pattern=r"^/", description="where operators copy CLI bundles")
    bind_address: str = Field("127.0.0.1", description="interface InfluxDB/Grafana ports bind to")


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


class FeaturesSpec(_Model):
    event_bridge_pipe: bool = False
    latest_value_table: bool = False
    edge: bool = False
    grafana: bool = True


class ProvisioningSpec(_Model):
    pre_provisioning_hook_lambda_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:lambda:")


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
    provisioning: ProvisioningSpec = ProvisioningSpec()
    edge: EdgeSettingsSpec = EdgeSettingsSpec()
    deletion_protection: bool = False

    @model_validator(mode="after")
    def _sites_unique(self) -> StackConfig:
        _unique([s.name for s in self.sites], "sites[].name")
        if self.features.edge:
            missing = [s.name for s in self.sites if s.edge is None]
            if missing:
                raise ValueError(f"features.edge is on but sites have no edge host: {', '.join(missing)}")
        return self


# Keys under the `pm500:` namespace and the StackConfig field each feeds.
_SCALAR_KEYS = {
    "environment": "environment",
    "deletionProtection": "deletionProtection",
}
_OBJECT_KEYS = {
    "sites": "sites",
    "kinesis": "kinesis",
    "archive": "archive",
    "features": "features",
    "provisioning": "provisioning",
    "edge": "edge",
}
KNOWN_KEYS = frozenset({*_SCALAR_KEYS, *_OBJECT_KEYS, "inventory"})


def _decode(key: str, raw: Any) -> Any:
    """Pulumi passes objects as JSON text and scalars as text: decode both the way the engine does."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _read_inventory(patterns: Any, project_dir: Path) -> list[Any]:
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise ConfigError(f"{NAMESPACE}:inventory: expected a path or glob, or a list of them")
    sites: list[Any] = []
    for pattern in patterns:
        files = sorted(glob.glob(str(project_dir / pattern)))
        if not files:
            raise ConfigError(f"{NAMESPACE}:inventory: {pattern!r} matches no file under {project_dir}")
        for name in files:
            sites.append(_load_site_file(Path(name), project_dir))
    return sites


def _load_site_file(path: Path, project_dir: Path) -> SiteSpec:
    shown = path.relative_to(project_dir) if path.is_relative_to(project_dir) else path
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{shown}: not valid YAML: {e}") from None
    try:
        return SiteSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, str(shown))) from None


def parse_stack_config(values: Mapping[str, Any], *, stack: str, project_dir: Path) -> StackConfig:
    """Validate the `pm500:*` config of one stack. `values` maps keys without the namespace to raw values."""
    unknown = sorted(set(values) - KNOWN_KEYS)
    if unknown:
        known = ", ".join(sorted(KNOWN_KEYS))
        raise ConfigError(f"{NAMESPACE}:{unknown[0]}: unknown config key (known: {known})")
    data: dict[str, Any] = {"stack": stack, "environment": stack}
    for key, field in {**_SCALAR_KEYS, **_OBJECT_KEYS}.items():
        if key in values:
            data[field] = _decode(key, values[key])
    if "inventory" in values:
        if "sites" in values:
            raise ConfigError(f"{NAMESPACE}:inventory: set either pm500:sites or pm500:inventory, not both")
        data["sites"] = _read_inventory(_decode("inventory", values["inventory"]), project_dir)
    elif "sites" not in values:
        raise ConfigError(f"{NAMESPACE}:sites: required (inline sites) unless {NAMESPACE}:inventory names files")
    try:
        return StackConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, NAMESPACE, joiner=":")) from None


def stack_name_rule() -> str:
    return f"stack names must match {NAME_PATTERN.pattern} ({NAME_RULE})"
