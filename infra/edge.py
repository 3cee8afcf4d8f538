"""What runs on each site's edge Docker host: InfluxDB, Grafana and one collector container per collector.

`EdgeStack` builds the collector image once (see `infra.images`) and declares one `EdgeHost` per site,
each with its own Docker provider pointed at `site.edge.docker_host` and carrying the ECR pull
credentials. Nothing here is declared when `features.edge` is off: `infra/__main__.py` only creates
an `EdgeStack` when it is on, so a cloud-only stack needs no Docker host and no Docker engine.

Credentials are generated per site (pulumi-random) and stay Pulumi secrets end to end: they reach the
containers as environment variables, and every output that carries them is marked secret.

Every container drops all Linux capabilities and adds back only what it was shown to need on a real
engine (`tests/docker`), may not gain privileges (`no-new-privileges`), and runs on a read-only root
filesystem with a small tmpfs where it writes scratch files. InfluxDB and Grafana publish their ports on
`edge.bindAddress` (loopback by default); beyond loopback the config requires `edge.tls`, and then both
serve HTTPS, and the collectors and Grafana reach InfluxDB over HTTPS trusting the site's CA.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from collector.config import CONFIG_FILE, ENV_PREFIX, bundle_subdir
from infra.config import CollectorSpec, EdgeHostSpec, EdgeTlsSpec, SiteSpec, StackConfig
from infra.images import REPO_ROOT, CollectorImage
from infra.naming import Names

GRAFANA_DIR = REPO_ROOT / "grafana"
DATASOURCE_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "pm500.yaml"
DASHBOARD_PROVIDER_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "pm500.yaml"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "pm500-power.json"
# Where the files above land inside the Grafana container (the provider file names the folder).
GRAFANA_DATASOURCE_PATH = "/etc/grafana/provisioning/datasources/pm500.yaml"
GRAFANA_PROVIDER_PATH = "/etc/grafana/provisioning/dashboards/pm500.yaml"
GRAFANA_DASHBOARD_PATH = "/etc/grafana/dashboards/pm500/pm500-power.json"
# The root filesystem is read-only, and Docker writes uploads only into volumes there: the folders the
# files above go to are volumes (created from the image's content on first use).
GRAFANA_UPLOAD_VOLUMES = {"grafana-provisioning": "/etc/grafana/provisioning",
                          "grafana-dashboards": "/etc/grafana/dashboards"}

INFLUX_PORT = 8086
GRAFANA_PORT = 3000
INFLUX_ALIAS = "influxdb"  # the InfluxDB container's name on the site network

# Least privilege inside each container (docs/edge.md, "What the containers do on the host").
DROP_ALL_CAPABILITIES = ["ALL"]
# Added back per container: only what tests/docker showed it needs on a real engine.
COLLECTOR_CAPABILITIES: list[str] = []  # runs as uid 10001, writes only its own volume
# Root in the container, whose data folder the image gives to its `influxdb` user: without
# DAC_OVERRIDE root cannot create `meta/` there (tests/docker/test_edge_deploy.py shows both).
INFLUXDB_CAPABILITIES = ["DAC_OVERRIDE"]
GRAFANA_CAPABILITIES: list[str] = []  # the image runs as uid 472
NO_NEW_PRIVILEGES = "no-new-privileges:true"
SCRATCH_TMPFS = {"/tmp": "rw,noexec,nosuid,size=16m"}  # noqa: S108 - a path inside the container
# HTTPS (edge.tls): the edge host's PEM files, mounted read-only at these paths in every container.
TLS_DIR = "/etc/pm500/tls"
TLS_CERTIFICATE = f"{TLS_DIR}/server.pem"
TLS_PRIVATE_KEY = f"{TLS_DIR}/server.key"
TLS_CA = f"{TLS_DIR}/ca.pem"
# OpenSSL (the collector's Python) and Go (Grafana) both take their trust store from this variable.
TRUST_ENV = "SSL_CERT_FILE"
BUNDLE_MOUNT = "/bundle"
BUFFER_MOUNT = "/var/lib/pm500"
RESTART = "unless-stopped"
LOG_DRIVER = "json-file"
LOG_OPTS = {"max-size": "10m", "max-file": "5"}  # at most 50 MiB of logs per container
# A clean stop (SIGTERM: last readings acknowledged, NDEATH published) takes a few seconds; Docker's
# default 10 s is tight on a busy edge box, and without a grace period the provider force-removes
# (SIGKILL) a container it replaces, e.g. on every collector image change.
COLLECTOR_STOP_TIMEOUT_S = 30
# The collector writes only its buffer volume: its root filesystem is read-only, /tmp a small tmpfs.
COLLECTOR_TMPFS = SCRATCH_TMPFS

# Overrides the collector applies on top of its bundle config (`collector.config.apply_env_overrides`).
COLLECTOR_ENV_INFLUX_URL = f"{ENV_PREFIX}INFLUX__URL"
COLLECTOR_ENV_INFLUX_DATABASE = f"{ENV_PREFIX}INFLUX__DATABASE"
COLLECTOR_ENV_INFLUX_USERNAME = f"{ENV_PREFIX}INFLUX__USERNAME"
COLLECTOR_ENV_INFLUX_PASSWORD = f"{ENV_PREFIX}INFLUX__PASSWORD"
COLLECTOR_CONFIG = f"{BUNDLE_MOUNT}/{CONFIG_FILE}"
# The image's own probe: reads the health host/port from the same config the collector runs with.
COLLECTOR_HEALTHCHECK = ["CMD", "python", "-m", "collector", "--config", COLLECTOR_CONFIG, "--healthcheck"]

# Environment the Grafana provisioning files interpolate (grafana/provisioning/datasources/pm500.yaml),
# Grafana's own prefix (docs/ENVIRONMENT.md).
GRAFANA_ENV_INFLUX_URL = "PM500G_INFLUX_URL"
GRAFANA_ENV_INFLUX_DATABASE = "PM500G_INFLUX_DATABASE"
GRAFANA_ENV_INFLUX_USER = "PM500G_INFLUX_READ_USER"
GRAFANA_ENV_INFLUX_PASSWORD = "PM500G_INFLUX_READ_PASSWORD"  # noqa: S105 - a variable name

INFLUX_ADMIN_USER = "pm500admin"
INFLUX_WRITE_USER = "pm500writer"
INFLUX_READ_USER = "pm500reader"
GRAFANA_ADMIN_USER = "admin"


def bundle_dir(edge: EdgeHostSpec, stack: str, site: str, collector: str) -> str:
    """Host folder of the collector's bundle: `<bundle_root>/<stack>/<site>/<collector>`, the layout
    `cli.py devices provision` writes below `bundles/`, so a site's bundles are copied as one tree."""
    return f"{edge.bundle_root.rstrip('/')}/{bundle_subdir(stack, site, collector)}"


def influx_url(tls: EdgeTlsSpec | None) -> str:
    """How the collectors and Grafana reach InfluxDB on the site network."""
    return f"{'https' if tls else 'http'}://{INFLUX_ALIAS}:{INFLUX_PORT}"


def _tls_mounts(tls: EdgeTlsSpec | None, *, server: bool) -> list[docker.ContainerVolumeArgs]:
    """The CA (every client of InfluxDB) and, for a server, its certificate and key; read-only."""
    if tls is None:
        return []
    files = [(tls.ca_path, TLS_CA)]
    if server:
        files += [(tls.certificate_path, TLS_CERTIFICATE), (tls.private_key_path, TLS_PRIVATE_KEY)]
    return [docker.ContainerVolumeArgs(host_path=host, container_path=inside, read_only=True)
            for host, inside in files]


def _hardened(capabilities: list[str]) -> dict[str, Any]:
    """Container arguments every edge container gets (see the module doc)."""
    return {
        "capabilities": docker.ContainerCapabilitiesArgs(drops=DROP_ALL_CAPABILITIES,
                                                         adds=capabilities or None),
        "security_opts": [NO_NEW_PRIVILEGES],
        "read_only": True,
    }


def _env(pairs: Sequence[tuple[str, pulumi.Input[str]]]) -> list[pulumi.Output[str]]:
    """`NAME=value` strings; a secret value keeps its entry (and so the container's env) secret."""
    return [pulumi.Output.concat(key, "=", value) for key, value in pairs]


class SitePasswords(pulumi.ComponentResource):
    """Per-site generated credentials; each `Output` is explicitly secret."""

    def __init__(self, name: str, *, grafana: bool, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pm500:edge:SitePasswords", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def password(purpose: str) -> pulumi.Output[str]:
            generated = random.RandomPassword(f"{name}-{purpose}", length=32, special=False, opts=child)
            return pulumi.Output.secret(generated.result)

        self.influx_admin = password("influx-admin")
        self.influx_writer = password("influx-writer")
        self.influx_reader = password("influx-reader")
        self.grafana_admin = password("grafana-admin") if grafana else None
        self.register_outputs({})


class EdgeHost(pulumi.ComponentResource):
    """One site's edge box: its Docker provider and every container, volume and network on it."""

    def __init__(self, name: str, *, cfg: StackConfig, site: SiteSpec, edge: EdgeHostSpec,
                 image: CollectorImage, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pm500:edge:EdgeHost", name, None, opts)
        self._names = Names(cfg.stack)
        self._site = site.name
        self._cfg = cfg
        self._edge = edge
        self.docker_host = edge.docker_host
        self.provider = docker.Provider(
            f"{name}-docker", host=edge.docker_host, registry_auth=[image.registry_auth],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._on_host = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self.passwords = SitePasswords(f"{name}-passwords", grafana=cfg.features.grafana,
                                       opts=pulumi.ResourceOptions(parent=self))
        self.network = docker.Network(f"{name}-network", name=self._docker_name(), opts=self._on_host)

        self.influxdb = self._influxdb(name)
        admin = self.passwords.grafana_admin
        self.grafana = self._grafana(name, admin) if admin is not None else None
        collector_image = docker.RemoteImage(
            f"{name}-collector-image", name=image.repo_digest, keep_locally=False, opts=self._on_host,
        )
        self.collectors = {
            c.name: self._collector(name, site, c, collector_image) for c in site.collectors
        }
        scheme = "https" if edge.tls else "http"
        self.influx_url = f"{scheme}://{edge.bind_address}:{INFLUX_PORT}"
        self.grafana_url = f"{scheme}://{edge.bind_address}:{GRAFANA_PORT}" if self.grafana else None
        self.register_outputs({
            "dockerHost": edge.docker_host,
            "influxUrl": self.influx_url,
            "grafanaUrl": self.grafana_url,
            "collectorContainers": {k: c.name for k, c in self.collectors.items()},
        })

    def _docker_name(self, purpose: str | None = None) -> str:
        return self._names.edge(self._site, purpose)

    def _volume(self, name: str, purpose: str) -> docker.Volume:
        return docker.Volume(f"{name}-{purpose}", name=self._docker_name(purpose), opts=self._on_host)

    def _after_influxdb(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(self._on_host, pulumi.ResourceOptions(depends_on=[self.influxdb]))

    def _port(self, port: int) -> docker.ContainerPortArgs:
        return docker.ContainerPortArgs(internal=port, external=port, ip=self._edge.bind_address,
                                        protocol="tcp")

    def _influxdb(self, name: str) -> docker.Container:
        image = docker.RemoteImage(f"{name}-influxdb-image", name=self._cfg.edge.influx_image,
                                   keep_locally=True, opts=self._on_host)
        data = self._volume(name, "influxdb-data")
        pw = self.passwords
        tls = self._edge.tls
        https = [("INFLUXDB_HTTP_HTTPS_ENABLED", "true"),
                 ("INFLUXDB_HTTP_HTTPS_CERTIFICATE", TLS_CERTIFICATE),
                 ("INFLUXDB_HTTP_HTTPS_PRIVATE_KEY", TLS_PRIVATE_KEY)] if tls else []
        # /ping answers 204 without credentials once the HTTP service is up; over HTTPS the probe checks
        # the certificate as the clients do (the site CA, the `influxdb` name).
        probe = ["CMD", "curl", "-sf", f"http://127.0.0.1:{INFLUX_PORT}/ping"] if tls is None else [
            "CMD", "curl", "-sf", "--cacert", TLS_CA, "--resolve", f"{INFLUX_ALIAS}:{INFLUX_PORT}:127.0.0.1",
            f"https://{INFLUX_ALIAS}:{INFLUX_PORT}/ping"]
        return docker.Container(
            f"{name}-influxdb",
            name=self._docker_name("influxdb"),
            image=image.image_id,
            restart=RESTART,
            # Read by the image's init script on first start (empty data volume) only.
            envs=_env([*https,
                ("INFLUXDB_DB", self._cfg.edge.influx_database),
                ("INFLUXDB_HTTP_AUTH_ENABLED", "true"),
                ("INFLUXDB_REPORTING_DISABLED", "true"),
                ("INFLUXDB_ADMIN_USER", INFLUX_ADMIN_USER),
                ("INFLUXDB_ADMIN_PASSWORD", pw.influx_admin),
                ("INFLUXDB_WRITE_USER", INFLUX_WRITE_USER),
                ("INFLUXDB_WRITE_USER_PASSWORD", pw.influx_writer),
                ("INFLUXDB_READ_USER", INFLUX_READ_USER),
                ("INFLUXDB_READ_USER_PASSWORD", pw.influx_reader),
            ]),
            mounts=[docker.ContainerMountArgs(type="volume", source=data.name, target="/var/lib/influxdb")],
            volumes=_tls_mounts(tls, server=True),
            ports=[self._port(INFLUX_PORT)],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=self.network.name, aliases=[INFLUX_ALIAS])],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=probe, interval="15s", timeout="5s", retries=5, start_period="30s"),
            tmpfs=SCRATCH_TMPFS,
            **_hardened(INFLUXDB_CAPABILITIES),
            wait=True,
            wait_timeout=180,
            log_driver=LOG_DRIVER,
            log_opts=LOG_OPTS,
            opts=self._on_host,
        )

    def _grafana(self, name: str, admin_password: pulumi.Output[str]) -> docker.Container:
        image = docker.RemoteImage(f"{name}-grafana-image", name=self._cfg.edge.grafana_image,
                                   keep_locally=True, opts=self._on_host)
        data = self._volume(name, "grafana-data")
        upload_volumes = [(self._volume(name, purpose), target)
                          for purpose, target in GRAFANA_UPLOAD_VOLUMES.items()]
        pw = self.passwords
        tls = self._edge.tls
        https = [("GF_SERVER_PROTOCOL", "https"), ("GF_SERVER_CERT_FILE", TLS_CERTIFICATE),
                 ("GF_SERVER_CERT_KEY", TLS_PRIVATE_KEY), (TRUST_ENV, TLS_CA)] if tls else []
        scheme, insecure = ("https", " --no-check-certificate") if tls else ("http", "")
        uploads = [
            docker.ContainerUploadArgs(file=target, content=source.read_text())
            for target, source in ((GRAFANA_DATASOURCE_PATH, DATASOURCE_FILE),
                                   (GRAFANA_PROVIDER_PATH, DASHBOARD_PROVIDER_FILE),
                                   (GRAFANA_DASHBOARD_PATH, DASHBOARD_FILE))
        ]
        return docker.Container(
            f"{name}-grafana",
            name=self._docker_name("grafana"),
            image=image.image_id,
            restart=RESTART,
            envs=_env([
                *https,
                ("GF_LOG_MODE", "console"),  # to Docker's rotated log, not a file on the read-only root
                ("GF_SECURITY_ADMIN_USER", GRAFANA_ADMIN_USER),
                ("GF_SECURITY_ADMIN_PASSWORD", admin_password),
                ("GF_USERS_ALLOW_SIGN_UP", "false"),
                ("GF_ANALYTICS_REPORTING_ENABLED", "false"),
                ("GF_ANALYTICS_CHECK_FOR_UPDATES", "false"),
                ("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", GRAFANA_DASHBOARD_PATH),
                (GRAFANA_ENV_INFLUX_URL, influx_url(tls)),
                (GRAFANA_ENV_INFLUX_DATABASE, self._cfg.edge.influx_database),
                (GRAFANA_ENV_INFLUX_USER, INFLUX_READ_USER),
                (GRAFANA_ENV_INFLUX_PASSWORD, pw.influx_reader),
            ]),
            uploads=uploads,
            mounts=[docker.ContainerMountArgs(type="volume", source=data.name, target="/var/lib/grafana"),
                    *(docker.ContainerMountArgs(type="volume", source=v.name, target=target)
                      for v, target in upload_volumes)],
            volumes=_tls_mounts(tls, server=True),
            ports=[self._port(GRAFANA_PORT)],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=self.network.name)],
            # A liveness probe of the server itself (127.0.0.1 is not a name its certificate carries).
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD-SHELL",
                       f"wget -q{insecure} -O /dev/null {scheme}://127.0.0.1:{GRAFANA_PORT}/api/health"],
                interval="30s", timeout="5s", retries=3, start_period="30s"),
            tmpfs=SCRATCH_TMPFS,
            **_hardened(GRAFANA_CAPABILITIES),
            log_driver=LOG_DRIVER,
            log_opts=LOG_OPTS,
            opts=self._after_influxdb(),
        )

    def _collector(self, name: str, site: SiteSpec, collector: CollectorSpec,
                   image: docker.RemoteImage) -> docker.Container:
        buffer = self._volume(name, f"buffer-{collector.name}")
        tls = self._edge.tls
        return docker.Container(
            f"{name}-{collector.name}-collector",
            name=self._docker_name(f"collector-{collector.name}"),
            image=image.image_id,
            restart=RESTART,
            envs=_env([
                *([(TRUST_ENV, TLS_CA)] if tls else []),
                (COLLECTOR_ENV_INFLUX_URL, influx_url(tls)),
                (COLLECTOR_ENV_INFLUX_DATABASE, self._cfg.edge.influx_database),
                (COLLECTOR_ENV_INFLUX_USERNAME, INFLUX_WRITE_USER),
                (COLLECTOR_ENV_INFLUX_PASSWORD, self.passwords.influx_writer),
            ]),
            # The bundle is a bind in `volumes` (HostConfig.Binds), not a `mounts` bind: Docker creates a
            # missing Binds source folder, but rejects a missing `mounts` source. The first `up` runs before
            # any bundle exists (provision-device needs the thing this `up` creates), so the container
            # starts and waits for its bundle instead of failing the deploy (docs/edge.md, first deploy).
            volumes=[docker.ContainerVolumeArgs(
                host_path=bundle_dir(self._edge, self._cfg.stack, site.name, collector.name),
                container_path=BUNDLE_MOUNT, read_only=True), *_tls_mounts(tls, server=False)],
            mounts=[docker.ContainerMountArgs(type="volume", source=buffer.name, target=BUFFER_MOUNT)],
            tmpfs=COLLECTOR_TMPFS,
            **_hardened(COLLECTOR_CAPABILITIES),
            stop_timeout=COLLECTOR_STOP_TIMEOUT_S,
            destroy_grace_seconds=COLLECTOR_STOP_TIMEOUT_S,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=self.network.name)],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=COLLECTOR_HEALTHCHECK,
                interval="30s", timeout="5s", retries=3, start_period="20s"),
            log_driver=LOG_DRIVER,
            log_opts=LOG_OPTS,
            opts=self._after_influxdb(),
        )


class EdgeStack(pulumi.ComponentResource):
    """The collector image (built once per stack) and one `EdgeHost` per site."""

    def __init__(self, name: str, cfg: StackConfig, opts: pulumi.ResourceOptions | None = None,
                 *, context: Path = REPO_ROOT) -> None:
        super().__init__("pm500:edge:EdgeStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names = Names(cfg.stack)
        self.image = CollectorImage(f"{name}-collector", repository_name=names.resource("collector"),
                                    keep_images=cfg.edge.ecr_keep_images, context=context, opts=child)
        self.hosts: dict[str, EdgeHost] = {}
        for site in cfg.sites:
            if site.edge is None:  # StackConfig refuses features.edge without an edge host per site
                raise ValueError(f"sites[{site.name}].edge: required when features.edge is on")
            self.hosts[site.name] = EdgeHost(f"{name}-{site.name}", cfg=cfg, site=site, edge=site.edge,
                                             image=self.image, opts=child)
        self.summary: dict[str, Any] = {
            "imageRepositoryUrl": self.image.repository.repository_url,
            "imageDigest": self.image.repo_digest,
            "sites": {
                site: {"dockerHost": h.docker_host, "influxUrl": h.influx_url, "grafanaUrl": h.grafana_url}
                for site, h in self.hosts.items()
            },
        }
        self.register_outputs(self.summary)
