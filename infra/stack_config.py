"""Read the stack config from the Pulumi runtime once, validate it, fail before any resource exists.

The language host hands the program its config as a JSON map (`PULUMI_CONFIG`, keys `namespace:key`,
objects as JSON text) plus the list of secret keys; `pulumi.Config` only looks keys up by name, so the
map is read whole here to catch unknown (misspelt) `pm500:` keys too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from collector.validation import ConfigError
from infra.config import NAMESPACE, StackConfig, parse_stack_config

REGION_KEY = "aws:region"


def _all_config() -> dict[str, Any]:
    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}


def load_stack_config() -> StackConfig:
    """The validated config of the stack being deployed (raises `ConfigError` naming the key)."""
    raw = _all_config()
    prefix = f"{NAMESPACE}:"
    values = {k.removeprefix(prefix): v for k, v in raw.items() if k.startswith(prefix)}
    secret_keys = frozenset(k for k in values if pulumi.runtime.is_config_secret(prefix + k))
    region = raw.get(REGION_KEY)
    if not isinstance(region, str) or not region:
        raise ConfigError(f"{REGION_KEY}: required (the AWS region to deploy to, e.g. eu-west-1)")
    return parse_stack_config(
        values,
        stack=pulumi.get_stack(),
        project_dir=Path(pulumi.get_root_directory()),
        region=region,
        secret_keys=secret_keys,
    )
