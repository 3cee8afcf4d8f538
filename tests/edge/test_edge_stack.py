"""The edge component on Pulumi's mock runtime: what each edge host gets, and how the image flows."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
from pulumi.runtime.sync_await import _sync_await

from devices.bundle import default_bundle_dir
from infra import edge as edge_mod
from infra.config import StackConfig
from infra.edge import EdgeStack
from infra.images import content_tag
from tests.edge.conftest import ECR_TOKEN, REGISTRY, RecordingMocks, evaluate, is_secret, plain, stack_config

CONTAINER = "docker:index/container:Container"
PROVIDER = "pulumi:providers:docker"


def run(cfg: StackConfig, context: Path) -> RecordingMocks:
    return evaluate(lambda: EdgeStack("edge", cfg, context=context), cfg.stack)


def env_of(container: object) -> dict[str, str]:
    envs = container.get("envs")  # type: ignore[attr-defined]
    return dict(e.split("=", 1) for e in envs)


@pytest.fixture(params=["staging", "prod"])
def stack(request: pytest.FixtureRequest) -> StackConfig:
    # prod: two sites (two edge hosts); staging: one site without Grafana.
    if request.param == "prod":
        return stack_config("prod", sites=2)
    return stack_config("staging", sites=1, grafana=False)


def test_one_docker_provider_per_edge_host_with_auth(stack: StackConfig, image_context: Path) -> None:
    mocks = run(stack, image_context)
    providers = mocks.of_type(PROVIDER)
    hosts = sorted(s.edge.docker_host for s in stack.sites if s.edge)
    assert sorted(p.get("host") for p in providers) == hosts
    for p in providers:
        assert is_secret(p.inputs["registryAuth"]), "ECR pull token must stay a secret"
        auth = json.loads(p.get("registryAuth"))
        assert auth == [{"address": f"https://{REGISTRY}", "username": "AWS", "password": ECR_TOKEN}]
    # Every resource on an edge host goes through that host's provider, never the default one.
    on_hosts = [d for d in mocks.docker() if d.typ != PROVIDER and d.typ != "docker:index/image:Image"]
    assert on_hosts and all(d.provider_name.startswith("edge-") for d in on_hosts)
    for site in stack.sites:
        mine = [d for d in on_hosts if d.provider_name == f"edge-{site.name}-docker"]
        assert {f"edge-{site.name}-influxdb", f"edge-{site.name}-network"} <= {d.name for d in mine}


def test_ecr_repository_settings(stack: StackConfig, image_context: Path) -> None:
    mocks = run(stack, image_context)
    (repo,) = mocks.of_type("aws:ecr/repository:Repository")
    assert repo.get("name") == f"pm500-{stack.stack}-collector"
    assert repo.get("imageTagMutability") == "MUTABLE"  # see test_image_push_twice
    assert repo.get("imageScanningConfiguration") == {"scanOnPush": True}
    (policy,) = mocks.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    rule = json.loads(policy.get("policy"))["rules"][0]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan",
                                 "countNumber": stack.edge.ecr_keep_images}
    assert rule["action"] == {"type": "expire"}


def test_image_built_from_repo_context_and_pushed_with_auth(stack: StackConfig, image_context: Path) -> None:
    mocks = run(stack, image_context)
    (image,) = mocks.of_type("docker:index/image:Image")
    tag = content_tag(image_context, "collector/Dockerfile")
    assert image.get("imageName") == f"{REGISTRY}/pm500-{stack.stack}-collector:{tag}"
    assert image.get("build")["context"] == str(image_context)
    assert image.get("build")["dockerfile"] == str(image_context / "collector" / "Dockerfile")
    assert image.get("registry") == {"server": f"{REGISTRY}/pm500-{stack.stack}-collector",
                                     "username": "AWS", "password": ECR_TOKEN}
    registry = image.inputs["registry"]
    assert is_secret(registry) or is_secret(registry["password"]), "the ECR token must stay a secret"
    assert image.get("skipPush") is False


def test_collector_containers_run_the_pushed_digest(stack: StackConfig, image_context: Path) -> None:
    mocks = run(stack, image_context)
    (image,) = mocks.of_type("docker:index/image:Image")
    digest = image.outputs["repoDigest"]
    for site in stack.sites:
        pulled = mocks.named(f"edge-{site.name}-collector-image")
        assert pulled.get("name") == digest, "edge hosts pull by repo digest, never by tag"
        for c in site.collectors:
            container = mocks.named(f"edge-{site.name}-{c.name}-collector")
            assert container.get("image") == pulled.outputs["imageId"]


def _inputs(mocks: RecordingMocks) -> dict[tuple[str, str], object]:
    return {(d.typ, d.name): plain(d.inputs) for d in mocks.declared}


def _collector_images(mocks: RecordingMocks) -> dict[str, str]:
    return {d.name: d.get("image") for d in mocks.of_type(CONTAINER) if d.name.endswith("-collector")}


def test_code_change_rolls_collectors_and_no_op_changes_nothing(image_context: Path) -> None:
    cfg = stack_config("prod", sites=2)
    first = run(cfg, image_context)
    again = run(cfg, image_context)
    # No-op: the same resources with identical inputs -> the engine has nothing to do.
    assert _inputs(first) == _inputs(again)
    assert _collector_images(first) == _collector_images(again)

    (image_context / "collector" / "__init__.py").write_text('"""collector, changed"""\n')
    changed = run(cfg, image_context)
    before, after = _collector_images(first), _collector_images(changed)
    assert before.keys() == after.keys() and len(before) == 3
    assert all(before[k] != after[k] for k in before), "a code change must roll every collector"
    # InfluxDB and Grafana do not move for a collector change.
    for name in ("edge-plant-a-influxdb", "edge-plant-a-grafana"):
        assert first.named(name).get("image") == changed.named(name).get("image")

    # A file the Dockerfile does not copy changes nothing.
    (image_context / "docs" / "notes.md").write_text("edited\n")
    assert _collector_images(run(cfg, image_context)) == after


def test_influxdb_container(stack: StackConfig, image_context: Path) -> None:
    mocks = run(stack, image_context)
    for site in stack.sites:
        assert site.edge is not None
        influx = mocks.named(f"edge-{site.name}-influxdb")
        assert influx.get("name") == f"pm500_{stack.stack}_{site.name}_influxdb"
        pulled = mocks.named(f"edge-{site.name}-influxdb-image")
        assert pulled.get("name") == "influxdb:1.8"
        assert influx.get("image") == pulled.outputs["imageId"]
        assert influx.get("restart") == "unless-stopped"
        assert influx.get("ports") == [
            {"internal": 8086, "external": 8086, "ip": "127.0.0.1", "protocol": "tcp"}]
        assert influx.get("mounts") == [{"type": "volume", "target": "/var/lib/influxdb",
                                         "source": f"pm500_{stack.stack}_{site.name}_influxdb-data"}]
        volume = mocks.named(f"edge-{site.name}-influxdb-data")
        assert volume.typ == "docker:index/volume:Volume"
        env = env_of(influx)
        assert env["INFLUXDB_DB"] == "pm500"
        assert env["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
        assert env["INFLUXDB_ADMIN_USER"] and env["INFLUXDB_WRITE_USER"] and env["INFLUXDB_READ_USER"]
        assert env["INFLUXDB_ADMIN_PASSWORD"] == f"generated-edge-{site.name}-passwords-influx-admin"
        assert env["INFLUXDB_WRITE_USER_PASSWORD"] == f"generated-edge-{site.name}-passwords-influx-writer"
        assert is_secret(influx.inputs["envs"]), "a container env holding passwords must be secret"
        health = influx.get("healthcheck")
        assert health["tests"] == ["CMD", "curl", "-sf", "http://127.0.0.1:8086/ping"]
        assert health["retries"] >= 1 and health["interval"]
        assert influx.get("networksAdvanced") == [
            {"name": f"pm500_{stack.stack}_{site.name}", "aliases": ["influxdb"]}]
        assert influx.get("logOpts") == {"max-size": "10m", "max-file": "5"}


TLS = {"certificatePath": "/etc/pm500/tls/edge.pem", "privateKeyPath": "/etc/pm500/tls/edge.key",
       "caPath": "/etc/pm500/tls/site-ca.pem"}


def with_edge(bind: str, tls: dict[str, str] | None) -> StackConfig:
    data = stack_config("prod", sites=1).model_dump(by_alias=True)
    data["sites"][0]["edge"].update(bindAddress=bind, tls=tls)
    return StackConfig.model_validate(data)


def test_ports_bind_the_configured_interface_only(image_context: Path) -> None:
    cfg = with_edge("198.51.100.7", TLS)  # TEST-NET-2: never contacted
    mocks = run(cfg, image_context)
    published = [p for c in mocks.of_type(CONTAINER) for p in (c.get("ports") or [])]
    assert {p["internal"] for p in published} == {8086, 3000}
    assert all(p["ip"] == "198.51.100.7" for p in published)
    collectors = [c for c in mocks.of_type(CONTAINER) if c.name.endswith("-collector")]
    assert collectors and all(not c.get("ports") for c in collectors), "collectors publish nothing"


@pytest.mark.parametrize("bind", ["0.0.0.0", "198.51.100.7", "::"])
def test_influxdb_and_grafana_beyond_loopback_need_tls(bind: str) -> None:
    """Issue 24: InfluxDB and Grafana served plain HTTP (passwords, plant data) when bound beyond loopback."""
    with pytest.raises(ValueError, match=rf"bindAddress {bind} is beyond loopback: .* set edge.tls"):
        with_edge(bind, None)
    assert with_edge("127.0.0.2", None).sites[0].edge.tls is None  # type: ignore[union-attr]


def test_with_tls_influxdb_and_grafana_serve_https_and_their_clients_trust_the_site_ca(
        image_context: Path) -> None:
    mocks = run(with_edge("198.51.100.7", TLS), image_context)
    influx, grafana = mocks.named("edge-plant-a-influxdb"), mocks.named("edge-plant-a-grafana")
    server_files = [{"hostPath": TLS["caPath"], "containerPath": edge_mod.TLS_CA, "readOnly": True},
                    {"hostPath": TLS["certificatePath"], "containerPath": edge_mod.TLS_CERTIFICATE,
                     "readOnly": True},
                    {"hostPath": TLS["privateKeyPath"], "containerPath": edge_mod.TLS_PRIVATE_KEY,
                     "readOnly": True}]
    assert influx.get("volumes") == server_files and grafana.get("volumes") == server_files
    env = env_of(influx)
    assert (env["INFLUXDB_HTTP_HTTPS_ENABLED"], env["INFLUXDB_HTTP_HTTPS_CERTIFICATE"],
            env["INFLUXDB_HTTP_HTTPS_PRIVATE_KEY"]) == ("true", edge_mod.TLS_CERTIFICATE,
                                                        edge_mod.TLS_PRIVATE_KEY)
    assert influx.get("healthcheck")["tests"][-1] == "https://influxdb:8086/ping"
    env = env_of(grafana)
    assert (env["GF_SERVER_PROTOCOL"], env["GF_SERVER_CERT_FILE"], env["GF_SERVER_CERT_KEY"]) == (
        "https", edge_mod.TLS_CERTIFICATE, edge_mod.TLS_PRIVATE_KEY)
    assert env[edge_mod.GRAFANA_ENV_INFLUX_URL] == "https://influxdb:8086"
    assert env["SSL_CERT_FILE"] == edge_mod.TLS_CA
    collector = mocks.named("edge-plant-a-edge-01-collector")
    env = env_of(collector)
    assert env[edge_mod.COLLECTOR_ENV_INFLUX_URL] == "https://influxdb:8086"
    assert env["SSL_CERT_FILE"] == edge_mod.TLS_CA
    assert collector.get("volumes")[1:] == server_files[:1]  # the CA only, never the server key


def test_every_container_drops_all_capabilities_and_runs_read_only(stack: StackConfig,
                                                                    image_context: Path) -> None:
    """Issue 24: edge containers kept Docker's default capabilities and could gain privileges."""
    mocks = run(stack, image_context)
    containers = mocks.of_type(CONTAINER)
    assert len(containers) == sum(len(s.collectors) + 1 + (stack.features.grafana) for s in stack.sites)
    for container in containers:
        # InfluxDB alone adds one back, shown necessary on the engine (tests/docker/test_edge_deploy.py)
        added = {"adds": ["DAC_OVERRIDE"]} if container.name.endswith("-influxdb") else {}
        assert container.get("capabilities") == {"drops": ["ALL"], **added}, container.name
        assert container.get("securityOpts") == ["no-new-privileges:true"], container.name
        assert container.get("readOnly") is True, container.name
        assert container.get("tmpfs") == {"/tmp": "rw,noexec,nosuid,size=16m"}, container.name


def test_collector_containers(stack: StackConfig, image_context: Path) -> None:
    mocks = run(stack, image_context)
    for site in stack.sites:
        assert site.edge is not None
        for c in site.collectors:
            container = mocks.named(f"edge-{site.name}-{c.name}-collector")
            assert container.get("name") == f"pm500_{stack.stack}_{site.name}_collector-{c.name}"
            # The CLI's layout below the bundle root; a Binds entry, which Docker creates when missing.
            bundle = f"/opt/pm500/bundles/{stack.stack}/{site.name}/{c.name}"
            cli_layout = default_bundle_dir(Path(site.edge.bundle_root), stack.stack, site.name, c.name)
            assert str(cli_layout) == bundle
            assert container.get("volumes") == [
                {"hostPath": bundle, "containerPath": "/bundle", "readOnly": True}]
            assert container.get("mounts") == [
                {"type": "volume", "source": f"pm500_{stack.stack}_{site.name}_buffer-{c.name}",
                 "target": "/var/lib/pm500"},
            ]
            assert container.get("readOnly") is True
            assert container.get("tmpfs") == {"/tmp": "rw,noexec,nosuid,size=16m"}
            assert container.get("stopTimeout") == container.get("destroyGraceSeconds") == 30
            buffer = mocks.named(f"edge-{site.name}-buffer-{c.name}")
            assert buffer.typ == "docker:index/volume:Volume"
            env = env_of(container)
            assert env[edge_mod.COLLECTOR_ENV_INFLUX_URL] == "http://influxdb:8086"
            assert env[edge_mod.COLLECTOR_ENV_INFLUX_DATABASE] == stack.edge.influx_database
            influx_env = env_of(mocks.named(f"edge-{site.name}-influxdb"))
            assert env[edge_mod.COLLECTOR_ENV_INFLUX_USERNAME] == influx_env["INFLUXDB_WRITE_USER"]
            assert env[edge_mod.COLLECTOR_ENV_INFLUX_PASSWORD] == influx_env["INFLUXDB_WRITE_USER_PASSWORD"]
            assert is_secret(container.inputs["envs"])
            assert container.get("restart") == "unless-stopped"
            assert container.get("logDriver") == "json-file"
            assert container.get("logOpts") == {"max-size": "10m", "max-file": "5"}
            health = container.get("healthcheck")
            assert health["tests"] == ["CMD", "python", "-m", "collector", "--config", "/bundle/config.yaml",
                                       "--healthcheck"]
            assert container.get("networksAdvanced") == [{"name": f"pm500_{stack.stack}_{site.name}"}]


def test_grafana_is_optional_and_provisioned_from_repo_files(image_context: Path) -> None:
    without = run(stack_config("staging", grafana=False), image_context)
    assert not [d for d in without.declared if "grafana" in d.name]

    mocks = run(stack_config("prod"), image_context)
    grafana = mocks.named("edge-plant-a-grafana")
    uploads = {u["file"]: u["content"] for u in grafana.get("uploads")}
    assert uploads == {
        edge_mod.GRAFANA_DATASOURCE_PATH: edge_mod.DATASOURCE_FILE.read_text(),
        edge_mod.GRAFANA_PROVIDER_PATH: edge_mod.DASHBOARD_PROVIDER_FILE.read_text(),
        edge_mod.GRAFANA_DASHBOARD_PATH: edge_mod.DASHBOARD_FILE.read_text(),
    }
    # The dashboard provider reads the folder the dashboard is uploaded to.
    assert str(Path(edge_mod.GRAFANA_DASHBOARD_PATH).parent) in uploads[edge_mod.GRAFANA_PROVIDER_PATH]
    env = env_of(grafana)
    influx_env = env_of(mocks.named("edge-plant-a-influxdb"))
    assert env["PM500G_INFLUX_READ_USER"] == influx_env["INFLUXDB_READ_USER"]
    assert env["PM500G_INFLUX_READ_PASSWORD"] == influx_env["INFLUXDB_READ_USER_PASSWORD"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "generated-edge-plant-a-passwords-grafana-admin"
    assert is_secret(grafana.inputs["envs"])
    # Uploads land in volumes: Docker refuses to write into a read-only root filesystem otherwise.
    assert grafana.get("mounts") == [
        {"type": "volume", "source": "pm500_prod_plant-a_grafana-data", "target": "/var/lib/grafana"},
        {"type": "volume", "source": "pm500_prod_plant-a_grafana-provisioning",
         "target": "/etc/grafana/provisioning"},
        {"type": "volume", "source": "pm500_prod_plant-a_grafana-dashboards",
         "target": "/etc/grafana/dashboards"}]
    assert all(any(f.startswith(m["target"] + "/") for m in grafana.get("mounts")) for f in uploads)
    assert grafana.get("healthcheck")["tests"][0] == "CMD-SHELL"
    assert grafana.get("restart") == "unless-stopped"


def test_every_password_is_generated_per_site(image_context: Path) -> None:
    mocks = run(stack_config("prod", sites=2), image_context)
    passwords = mocks.of_type("random:index/randomPassword:RandomPassword")
    assert len(passwords) == 2 * 4
    assert all(p.get("length") >= 32 for p in passwords)
    a = env_of(mocks.named("edge-plant-a-influxdb"))["INFLUXDB_ADMIN_PASSWORD"]
    b = env_of(mocks.named("edge-plant-b-influxdb"))["INFLUXDB_ADMIN_PASSWORD"]
    assert a != b


def test_secrets_stay_secret_in_outputs(image_context: Path) -> None:
    """`Output.is_secret` on what the program holds, not just on the recorded inputs."""
    cfg = stack_config("prod")
    held: dict[str, pulumi.Output[object]] = {}

    def build() -> None:
        stack = EdgeStack("edge", cfg, context=image_context)
        host = stack.hosts["plant-a"]
        held.update(
            influx_admin=host.passwords.influx_admin,
            registry_password=stack.image.registry_auth.password,
            collector_env=host.collectors["edge-01"].envs,
            influx_env=host.influxdb.envs,
            image_digest=stack.image.repo_digest,
        )

    evaluate(build, cfg.stack)
    secret = {k: _sync_await(v.is_secret()) for k, v in held.items()}
    assert secret == {"influx_admin": True, "registry_password": True, "collector_env": True,
                      "influx_env": True, "image_digest": False}


def test_sites_sharing_a_docker_host_get_their_own_names(image_context: Path) -> None:
    """Two sites (of one stack, or of stacks whose names differ only by a `-`) on one Docker host."""
    data = stack_config("a", sites=2).model_dump(by_alias=True)
    for i, site in enumerate(data["sites"]):
        site["edge"].update(dockerHost="ssh://pm500@shared.example", bindAddress=f"127.0.0.{i + 1}")
    mocks = run(StackConfig.model_validate(data), image_context)
    names = [d.get("name") for d in mocks.docker() if d.typ in (CONTAINER, "docker:index/volume:Volume",
                                                                 "docker:index/network:Network")]
    # 7 containers (2 InfluxDB, 2 Grafana, 3 collectors), 11 volumes (Grafana's data, provisioning and
    # dashboards per site), 2 networks: all distinct
    assert len(names) == len(set(names)) == 20
    assert "pm500_a_plant-a_influxdb" in names and "pm500_a_plant-b_influxdb" in names
    # `_` never occurs in stack or site names: stack a + site b-c and stack a-b + site c stay apart.
    data["stack"], data["sites"][0]["name"] = "a-b", "c"
    other = run(StackConfig.model_validate(data), image_context)
    assert "pm500_a-b_c_influxdb" in [d.get("name") for d in other.of_type(CONTAINER)]


def test_sites_sharing_a_docker_host_need_their_own_bind_address() -> None:
    data = stack_config("prod", sites=2).model_dump(by_alias=True)
    for site in data["sites"]:
        site["edge"]["dockerHost"] = "ssh://pm500@shared.example"
    with pytest.raises(ValueError, match=r"sites\[plant-b\]\.edge: dockerHost ssh://pm500@shared.example "
                                         r"with bindAddress 127\.0\.0\.1 is also used by site plant-a"):
        StackConfig.model_validate(data)
