"""The collector's config contract (`collector/config.py`), against what stands outside it: the ports
the protocols register, docs/collector.md's configuration table and overrides, docs/edge.md's bundle
layout, and the errors an operator is promised (naming the field, or the variable that set it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from collector.config import (
    CONFIG_FILE,
    DEFAULT_ENCODING,
    ENCODINGS,
    CollectorConfig,
    apply_env_overrides,
    bundle_subdir,
    load_config,
    parse_config,
)
from collector.validation import ConfigError


def config(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "stack": "prod", "site": "plant-a", "collector": "edge-01", "thing_name": "prod:plant-a:edge-01",
        "meters": [{"asset": "m1", "breaker": "Feeder 1", "host": "10.0.0.5"}],
        "mqtt": {"endpoint": "a1b2c3-ats.iot.eu-west-1.amazonaws.com"},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section] = {**data.get(section, {}), field: value}
        else:
            data[section] = value
    return data


def errors(data: object) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "config.yaml")
    return str(caught.value)


def test_defaults_are_the_registered_ports_and_documented_values() -> None:
    cfg = parse_config(config(), "config.yaml")
    # EtherNet/IP explicit messaging: TCP 44818 (ODVA, IANA "EtherNet-IP-2").
    assert cfg.meters[0].port == 44818
    # AWS IoT Core: MQTT with X.509 client certificates on 8883 (Developer Guide, "Protocols, port
    # mappings, and authentication").
    assert cfg.mqtt.port == 8883
    # docs/collector.md, "Configuration": InfluxDB on, json encoding, the named shadow on every 600 s.
    assert cfg.influx.enabled is True
    assert cfg.mqtt.encoding == DEFAULT_ENCODING == "json"
    assert ENCODINGS == ("json", "sparkplug-b")
    assert (cfg.shadow.enabled, cfg.shadow.report_interval_s) == (True, 600.0)
    assert cfg.mqtt.primary_host_id is None and cfg.mqtt.ddata_qos == 0


def test_the_bundle_layout_is_the_documented_one() -> None:
    """docs/edge.md: bundles under `<bundleRoot>/<stack>/<site>/<collector>`, with the bundle's
    `config.yaml` (docs/collector.md)."""
    assert bundle_subdir("prod", "plant-a", "edge-01") == "prod/plant-a/edge-01"
    assert CONFIG_FILE == "config.yaml"


def test_the_thing_name_must_be_stack_site_collector() -> None:
    assert errors(config(thing_name="prod:plant-b:edge-01")) == (
        "config.yaml: (root): thing_name must be 'prod:plant-a:edge-01' (stack:site:collector)")


def test_asset_ids_are_unique_within_a_collector() -> None:
    meter = {"asset": "m1", "breaker": "Feeder", "host": "10.0.0.5"}
    assert errors(config(meters=[meter, {**meter, "host": "10.0.0.6"}])) == (
        "config.yaml: (root): meters: asset ids must be unique, repeated: m1")


def test_a_breaker_label_influx_cannot_carry_is_refused_naming_the_field() -> None:
    """docs/collector.md: refused if it holds a control character or ends with a backslash."""
    for label in ("Feeder\n1", "Feeder 1\\"):
        problem = errors(config(meters=[{"asset": "m1", "breaker": label, "host": "10.0.0.5"}]))
        assert problem.startswith("config.yaml: meters[0].breaker: "), problem
    odd = 'Feeder "A", 1=2'  # quotes, commas, equals signs are escaped, not refused
    cfg = parse_config(config(meters=[{"asset": "m1", "breaker": odd, "host": "10.0.0.5"}]), "config.yaml")
    assert cfg.meters[0].breaker == odd


def test_sparkplug_settings_need_sparkplug() -> None:
    """docs/collector.md: `mqtt.primary_host_id` and `mqtt.ddata_qos` are `sparkplug-b` only."""
    assert "primary_host_id is a Sparkplug setting" in errors(config(mqtt__primary_host_id="scada"))
    assert "ddata_qos is a Sparkplug setting" in errors(config(mqtt__ddata_qos=1))
    cfg = parse_config(config(mqtt__encoding="sparkplug-b", mqtt__primary_host_id="scada", mqtt__ddata_qos=1),
                       "config.yaml")
    assert (cfg.mqtt.primary_host_id, cfg.mqtt.ddata_qos) == ("scada", 1)


def test_the_written_yaml_reads_back_as_the_same_config_password_included() -> None:
    """`cli.py devices provision` writes the bundle with `to_yaml`; the collector must read the same
    config back, the InfluxDB password in clear (the bundle is the collector's only source of it)."""
    cfg = parse_config(config(influx__username="pm500", influx__password="s3cret"), "config.yaml")
    text = cfg.to_yaml()
    assert yaml.safe_load(text)["influx"]["password"] == "s3cret"
    assert parse_config(yaml.safe_load(text), "config.yaml") == cfg
    no_password = parse_config(config(), "config.yaml")
    assert yaml.safe_load(no_password.to_yaml())["influx"]["password"] is None
    assert list(yaml.safe_load(no_password.to_yaml())) == list(CollectorConfig.model_fields)  # file order


def test_overrides_on_a_file_that_is_not_a_mapping_leave_it_to_the_schema(tmp_path: Path) -> None:
    """A config file holding a list is refused by the schema with a clear error, overrides or not."""
    assert apply_env_overrides(["a"], {"PM500C_SITE": "x"}) == (["a"], {})
    path = tmp_path / CONFIG_FILE
    path.write_text("- a\n")
    with pytest.raises(ConfigError, match="valid dictionary"):
        load_config(path, {"PM500C_SITE": "x"})


def test_a_bad_file_without_environment_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_FILE
    path.write_text(yaml.safe_dump(config(poll_interval_s=0)))
    with pytest.raises(ConfigError, match=r"poll_interval_s: Input should be greater than or equal to 0\.1"):
        load_config(path)


def test_only_the_lines_of_overridden_fields_name_a_variable(tmp_path: Path) -> None:
    """docs/collector.md: an error in an overridden field names the variable; the file's own errors
    keep their line as it was."""
    path = tmp_path / CONFIG_FILE
    path.write_text(yaml.safe_dump(config(poll_interval_s=0)))
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"PM500C_INFLUX__URL": "ftp://historian"})
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0] == (f"{path}: poll_interval_s: Input should be greater than or equal to 0.1")
    assert lines[1].startswith(f"{path}: influx.url: ") and lines[1].endswith("(set by PM500C_INFLUX__URL)")


def test_defaults_are_the_ones_the_configuration_table_states() -> None:
    """docs/collector.md, "Configuration": the default column."""
    cfg = parse_config(config(), "config.yaml")
    assert cfg.poll_interval_s == 1.0
    assert (cfg.mqtt.keepalive_s, cfg.mqtt.inflight_window) == (30, 256)
    assert (cfg.influx.url, cfg.influx.database, cfg.influx.username, cfg.influx.password) == (
        "http://127.0.0.1:8086", "pm500", None, None)
    assert (cfg.influx.batch_size, cfg.influx.flush_interval_s) == (500, 1.0)
    assert (cfg.health.host, cfg.health.port) == ("127.0.0.1", 8081)
    assert (str(cfg.buffer.path), cfg.buffer.max_bytes, cfg.buffer.synchronous) == (
        "/var/lib/pm500/buffer.sqlite", 256 * 1024 * 1024, "NORMAL")


@pytest.mark.parametrize(("variable", "meters", "problem"), [
    ("PM500C_METERS__0__HOST", ["edge"], "PM500C_METERS__0__HOST: meters[0] is not a mapping"),
    ("PM500C_METERS__0", [{"asset": "m1"}],
     "PM500C_METERS__0: meters[0]: a whole list item cannot be set from one variable"),
])
def test_an_override_that_points_nowhere_names_its_variable(variable: str, meters: list[Any],
                                                            problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        apply_env_overrides(config(meters=meters), {variable: "10.0.0.9"})
    assert str(caught.value) == problem


def test_an_unreadable_file_says_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_FILE
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: cannot read config file: No such file or directory"


def test_a_loaded_config_cannot_be_changed_in_place() -> None:
    """Runtime changes go through collector.settings (limits, record, persistence), never by assigning
    to the config the threads share."""
    cfg = parse_config(config(), "config.yaml")
    with pytest.raises(ValidationError, match="frozen"):
        cfg.poll_interval_s = 5.0  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        cfg.meters[0].host = "10.0.0.9"  # type: ignore[misc]


# (field, (lowest, highest) accepted, (just below, just above) refused): docs/collector.md's ranges;
# ports are TCP's 1..65535 (the health endpoint also takes 0: any free port).
LIMITS = [
    ("poll_interval_s", (0.1, 3600), (0.09, 3600.1)),
    ("mqtt__keepalive_s", (5, 1200), (4, 1201)),
    ("mqtt__inflight_window", (1, 10_000), (0, 10_001)),
    ("mqtt__port", (1, 65535), (0, 65536)),
    ("influx__batch_size", (1, 50_000), (0, 50_001)),
    ("influx__flush_interval_s", (0.001, 60), (0, 60.001)),
    ("influx__database", ("d", "pm500"), ("",)),
    ("health__port", (0, 65535), (-1, 65536)),
    ("shadow__report_interval_s", (10, 86_400), (9.9, 86_401)),
    ("buffer__max_bytes", (1024 * 1024,), (1024 * 1024 - 1,)),
]


@pytest.mark.parametrize(("field", "accepted", "refused"), LIMITS, ids=[f for f, _, _ in LIMITS])
def test_documented_limits(field: str, accepted: tuple[Any, ...], refused: tuple[Any, ...]) -> None:
    for value in accepted:
        parse_config(config(**{field: value}), "config.yaml")
    for value in refused:
        assert f": {field.replace('__', '.')}: " in errors(config(**{field: value}))


def test_meter_limits() -> None:
    """A breaker label of 1-64 characters; the meter's EtherNet/IP port within TCP's 1..65535."""
    def meter(**changes: Any) -> dict[str, Any]:
        return config(meters=[{"asset": "m1", "breaker": "Feeder", "host": "10.0.0.5", **changes}])

    for ok in (meter(breaker="x"), meter(breaker="x" * 64), meter(port=1), meter(port=65535)):
        parse_config(ok, "config.yaml")
    for bad, field in ((meter(breaker=""), "breaker"), (meter(breaker="x" * 65), "breaker"),
                       (meter(port=0), "port"), (meter(port=65536), "port")):
        assert f": meters[0].{field}: " in errors(bad)


def test_a_variable_naming_no_field_shows_the_documented_form() -> None:
    """docs/ENVIRONMENT.md's form of a collector variable: `PM500C_<FIELD>[__<SUBFIELD>...]`."""
    with pytest.raises(ConfigError) as caught:
        apply_env_overrides(config(), {"PM500C_INFLUX____URL": "http://historian:8086"})
    assert str(caught.value) == (
        "PM500C_INFLUX____URL: no field named (expected PM500C_<FIELD>[__<SUBFIELD>...])")


@pytest.mark.parametrize(("variable", "problem"), [
    # docs/collector.md, "Environment overrides": past the end with two meters, or not a number.
    ("PM500C_METERS__3__HOST", "PM500C_METERS__3__HOST: index 3 is past the end of meters (2 items)"),
    ("PM500C_METERS__FIRST__HOST", "PM500C_METERS__FIRST__HOST: meters: expected a list index, got 'first'"),
])
def test_a_list_index_that_points_nowhere_is_named(variable: str, problem: str) -> None:
    two = [{"asset": f"m{i}", "breaker": "Feeder", "host": "10.0.0.5"} for i in (1, 2)]
    with pytest.raises(ConfigError) as caught:
        apply_env_overrides(config(meters=two), {variable: "10.0.0.9"})
    assert str(caught.value) == problem
    singular = r"^PM500C_METERS__1__HOST: index 1 is past the end of meters \(1 item\)$"
    with pytest.raises(ConfigError, match=singular):
        apply_env_overrides(config(meters=two[:1]), {"PM500C_METERS__1__HOST": "10.0.0.9"})


def test_relative_paths_resolve_against_the_config_files_folder(tmp_path: Path) -> None:
    """docs/collector.md: "Relative paths resolve against the config file's folder" (a bundle works
    wherever it is mounted)."""
    path = tmp_path / "bundle" / CONFIG_FILE
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(config(buffer={"path": "buffer.sqlite"})))
    cfg = load_config(path)
    assert cfg.buffer.path == tmp_path / "bundle" / "buffer.sqlite"
    assert (cfg.mqtt.ca_file, cfg.mqtt.cert_file, cfg.mqtt.key_file) == (
        tmp_path / "bundle" / "root-ca.pem", tmp_path / "bundle" / "device.pem.crt",
        tmp_path / "bundle" / "private.pem.key")
