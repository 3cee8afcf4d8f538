"""Wiring: poller -> durable buffer -> (MQTT sink, InfluxDB sink), plus health and remote settings.

Every reading is committed to the buffer (and given its `seq`) before any sink sees it; each sink
drains the buffer on its own thread at its own pace. `Collector.start` turns unusable files (certificate,
key, CA, buffer directory) into a `ConfigError` naming the field, so `python -m collector` can exit with
the configuration exit code instead of crash-looping.

Remote changes (poll interval, meters in or out of service, debug) from any channel go through
`collector.settings.Settings`; the collector follows them on the settings worker (`_follow`), which
restarts polling when the interval or the set of meters changes: the old poller finishes its reads in
progress (committed to the buffer) before the new one starts, so a restart neither loses nor repeats
a reading.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import ipaddress
import json
import logging
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509

from collector.buffer import Buffer
from collector.config import CollectorConfig, MeterConfig
from collector.consistency import Verdict
from collector.credentials import bundle_file_problems
from collector.health import UNHEALTHY, HealthServer
from collector.influx_sink import InfluxSink
from collector.metrics import METRICS_BY_NAME
from collector.mqtt_link import IDENTITY_PROBLEM, tls_context
from collector.mqtt_sink import MqttSink
from collector.payload import encode, status_event
from collector.quality import screen
from collector.reading import Reading
from collector.settings import Running, Settings, flatten, nest
from collector.shadow import ShadowClient
from collector.sink_errors import SinkError
from collector.validation import ConfigError
from collector.wire import SparkplugWire, make_wire

log = logging.getLogger(__name__)

OUT_OF_SERVICE = "out_of_service"  # a meter taken out of service remotely: not polled, not a problem
HEALTHY_METER_STATES = ("ok", OUT_OF_SERVICE)
DEAD_METER_STATE = "stopped"  # collector.poller.MeterStatus.state once a meter thread has ended
COMMAND_SOURCE = "ncmd"  # the JSON NCMD channel, as named in the settings record
SPARKPLUG_SOURCE = "sparkplug-ncmd"  # a Sparkplug B NCMD write of a setting NBIRTH declared
VERSION = importlib.metadata.version("pm500")
REPORTED_PROBLEMS = 5  # the first problems in the shadow (a document is capped at 8 KB)
REPORTED_MESSAGE_CHARS = 200


class PollerLike(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def status(self) -> dict[str, Any]: ...


class PollerFactory(Protocol):
    def __call__(
        self,
        site: str,
        meters: Sequence[MeterConfig],
        interval_s: float,
        on_reading: Callable[[Reading], None],
        on_verdict: Callable[[str, Verdict], None] | None = None,
    ) -> PollerLike: ...


def default_poller(
    site: str,
    meters: Sequence[MeterConfig],
    interval_s: float,
    on_reading: Callable[[Reading], None],
    on_verdict: Callable[[str, Verdict], None] | None = None,
) -> PollerLike:
    from collector.poller import Poller  # the EtherNet/IP side; imported here to keep this module light

    poller: PollerLike = Poller(site, meters, interval_s, on_reading, on_verdict=on_verdict)
    return poller


def check_files(cfg: CollectorConfig) -> None:
    """Fail early, naming the field and the file, when a bundle file is missing or unusable."""
    problems = bundle_file_problems(cfg)
    if not problems:
        try:
            tls_context(cfg)
        except (ssl.SSLError, ValueError, OSError) as e:  # what our own checks did not foresee
            problems.append(f"mqtt: certificate, key or CA file unusable: {e}")
    if problems:
        raise ConfigError("\n".join(problems))


def config_warnings(cfg: CollectorConfig) -> list[str]:
    """Valid but risky settings, logged at startup: the health endpoint has no authentication."""
    host = cfg.health.host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return []
    return [
        f"health.host: {host} exposes the health endpoint (no authentication) beyond this host on port "
        f"{cfg.health.port}; use 127.0.0.1 unless a monitoring system must reach it"
    ]


class Collector:
    def __init__(
        self, cfg: CollectorConfig, debug: bool = False, poller_factory: PollerFactory = default_poller
    ) -> None:
        self.cfg = cfg
        self._poller_factory = poller_factory
        self._poller: PollerLike | None = None
        self._poller_lock = threading.Lock()  # guards _poller/_polling/_stopped, held briefly
        self._restart_lock = threading.Lock()  # one poller (re)start or stop at a time
        self._polling = False  # between start() and stop(): a stopped meter thread is then a dead one
        self._stopped = False
        self.counters = {
            "readings": 0,
            "bad_values": 0,
            "append_errors": 0,
        }
        self._bad_by_asset: dict[str, dict[str, str]] = {}  # last reported {metric: reason} per asset
        self._buffer_failed = False
        check_files(cfg)
        sinks = ("mqtt", "influx") if cfg.influx.enabled else ("mqtt",)
        self.wire = make_wire(cfg)  # mqtt.encoding: the one place it is looked at
        try:
            self.buffer = Buffer(
                cfg.buffer.path, cfg.buffer.max_bytes, cfg.thing_name, sinks, cfg.buffer.synchronous,
                ddata_encoder=self.wire.ddata_row, event_encoder=self._event_payload,
            )
        except Exception as e:  # sqlite3 errors, permissions, read-only mount...
            raise ConfigError(f"buffer.path: cannot open {cfg.buffer.path}: {e}") from None
        self.settings = Settings(cfg, debug=debug, follow=self._follow)
        running = self.settings.running()  # the bundle, or remote changes persisted before a restart
        self.debug = running.debug
        self._poll_interval_s = running.poll_interval_s
        self._out_of_service = running.out_of_service
        self.mqtt = MqttSink(cfg, self.buffer, window=cfg.mqtt.inflight_window, wire=self.wire)
        self.mqtt.on_command = self.handle_command
        self.mqtt.poll_interval_s = self._poll_interval_s
        self.mqtt.set_out_of_service(self._out_of_service)
        if isinstance(self.wire, SparkplugWire):  # the settings are writable node metrics in NBIRTH
            self.wire.settings = self.settings
            self.mqtt.on_write = self.handle_sparkplug_write
            self.mqtt.on_refused = self.refuse_sparkplug_command
            self.settings.listen(lambda target: self.mqtt.publish_settings())  # NDATA: the new values
        self.influx = InfluxSink(cfg.influx, self.buffer) if cfg.influx.enabled else None
        self._certificate_not_after = certificate_not_after(cfg.mqtt.cert_file)
        self.shadow = (
            ShadowClient(cfg.thing_name, self.mqtt.link, self.settings, self.shadow_report,
                         cfg.shadow.report_interval_s)
            if cfg.shadow.enabled else None
        )
        try:
            self.health = HealthServer(cfg.health.host, cfg.health.port, self.snapshot)
        except OSError as e:
            where = f"{cfg.health.host}:{cfg.health.port}"
            raise ConfigError(f"health.port: cannot listen on {where}: {e}") from None

    def start(self) -> None:
        for warning in config_warnings(self.cfg):
            log.warning(warning)
        self.health.start()
        self.mqtt.start()
        if self.influx is not None:
            self.influx.start()
        self._start_poller()
        self.settings.start()
        if self.shadow is not None:
            self.shadow.start()
        log.info(
            "collector started",
            extra={
                "thing": self.cfg.thing_name,
                "meters": len(self.cfg.meters),
                "poll_interval_s": self._poll_interval_s,
                "health_port": self.health.port,
                "buffered": self.buffer.stats()["depth"],
            },
        )

    def stop(self) -> None:
        """Stop polling first, then the sinks (acks already received are committed), then the rest."""
        if self.shadow is not None:
            self.shadow.stop()
        self.settings.stop()  # lets a poller restart in progress finish; none starts after this
        with self._restart_lock, self._poller_lock:  # waits for an NCMD restart under way
            self._polling = False
            self._stopped = True
            poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop()
        if self.influx is not None:
            self.influx.stop()
        self.mqtt.stop()
        self.health.stop()
        self.buffer.close()
        log.info("collector stopped")

    def _start_poller(self) -> None:
        """(Re)start polling. The old poller is stopped outside `_poller_lock`, which the health
        endpoint takes: stopping may wait for a slow meter's socket timeout."""
        with self._restart_lock:
            with self._poller_lock:
                if self._stopped:  # an NCMD restart racing a shutdown must not start a new poller
                    return
                old, self._poller, self._polling = self._poller, None, False
            if old is not None:
                old.stop()
            poller = self._poller_factory(
                self.cfg.site,
                [m for m in self.cfg.meters if m.asset not in self._out_of_service],
                self._poll_interval_s,
                self.on_reading,
                on_verdict=self.on_verdict,
            )
            with self._poller_lock:
                poller.start()
                self._poller, self._polling = poller, True

    def on_reading(self, reading: Reading) -> None:
        """Called from poller threads: commit first, then wake the sinks."""
        self.mqtt.note_reading(reading)  # the meter answered: its DBIRTH may carry these values now
        try:
            seq = self.buffer.append(reading)
        except Exception:
            self.counters["append_errors"] += 1
            self._buffer_failed = True
            log.exception("cannot write reading to the buffer", extra={"asset": reading.asset})
            return
        self._buffer_failed = False
        self.counters["readings"] += 1
        self._count_bad_values(reading)
        self.mqtt.notify()
        if self.influx is not None:
            self.influx.notify()
        if self.debug:
            print_reading(reading, seq)

    def _event_payload(self, reading: Reading, metric: str, active: bool) -> bytes:
        """An alarm/output EVENT as published; the buffer stores it with the reading that showed it."""
        return encode(status_event(self.cfg.thing_name, reading, metric, active))

    def _count_bad_values(self, reading: Reading) -> None:
        """Values the payload sends as null (`collector.quality`): counted, logged once per change."""
        _, bad = screen(reading.values)
        self.counters["bad_values"] += len(bad)
        if bad != self._bad_by_asset.get(reading.asset, {}):
            self._bad_by_asset[reading.asset] = bad
            if bad:
                extra = {"asset": reading.asset, "bad": bad}
                log.warning("meter values not fit to publish; sent as null", extra=extra)
            else:
                log.info("meter values plausible again", extra={"asset": reading.asset})

    def on_verdict(self, asset: str, verdict: Verdict) -> None:
        """Called from a meter thread when its register-map self-check verdict changes."""
        self.mqtt.set_verdict(asset, verdict.as_dict())

    def handle_command(self, payload: bytes) -> None:
        """JSON NCMD downlink: an object of settings, e.g. `{"poll_interval_s": 5}`, `{"debug": true}`,
        `{"meters": {"meter-1": {"in_service": false}}}`; checked, kept and recorded by `Settings`."""
        try:
            command = json.loads(payload)
        except ValueError as e:
            self.settings.refuse(f"not JSON: {e}", source=COMMAND_SOURCE)
            return
        if not isinstance(command, dict):
            self.settings.refuse("expected a JSON object of settings", source=COMMAND_SOURCE)
            return
        self.settings.apply(flatten(command), source=COMMAND_SOURCE)

    def handle_sparkplug_write(self, writes: dict[str, object]) -> None:
        """Sparkplug B NCMD writes of the settings NBIRTH declared (paho's thread; never blocks). Applied,
        an NDATA tells hosts the new values once the collector runs them; refused, nothing changes (the
        reasons are in the log and in /health's settings history)."""
        self.settings.apply(writes, source=SPARKPLUG_SOURCE)

    def refuse_sparkplug_command(self, reason: str) -> None:
        """An NCMD that is not a Sparkplug B Payload, or names a metric nobody may write: recorded."""
        self.settings.refuse(reason, source=SPARKPLUG_SOURCE)

    def _follow(self, target: Running) -> None:
        """On the settings worker: run `target`; polling restarts only if what it polls changed."""
        self.debug = target.debug
        self.mqtt.poll_interval_s = target.poll_interval_s  # the silence after which a meter is dead
        self.mqtt.set_out_of_service(target.out_of_service)
        if (target.poll_interval_s, target.out_of_service) != (self._poll_interval_s, self._out_of_service):
            self._poll_interval_s, self._out_of_service = target.poll_interval_s, target.out_of_service
            self._start_poller()

    def shadow_report(self) -> dict[str, Any]:
        """The reported state of the named shadow: what `cli.py fleet status` shows per collector."""
        health = self.snapshot()
        buffer = health["buffer"]
        settings = nest(self.settings.values())
        # Every configured meter, always: one missing from the poller's status (polling restarts after a
        # settings change) would be reported as removed, then added again.
        meters = {
            m.asset: {
                **settings["meters"].get(m.asset, {}),
                "state": health["meters"].get(m.asset, {}).get("state", "starting"),
                "register_map": (health["meters"].get(m.asset, {}).get("register_map") or {}).get("verdict"),
            }
            for m in self.cfg.meters
        }
        sinks = {
            name: {"last_error": _short(status.get("last_error"))}
            for name, status in health["sinks"].items()
            if status.get("enabled", True)
        }
        return {
            "version": VERSION,
            "encoding": self.cfg.mqtt.encoding,
            **settings,
            "meters": meters,
            "status": health["status"],
            "problems": [p[:REPORTED_MESSAGE_CHARS] for p in health["problems"][:REPORTED_PROBLEMS]],
            "backlog": {**buffer["depth"], "events": buffer.get("events", {}).get("depth", 0)},
            "last_ddata_ms": self.mqtt.last_delivered_ms,
            "sinks": sinks,
            "certificate": {"not_after": self._certificate_not_after},
        }

    def snapshot(self) -> dict[str, Any]:
        with self._poller_lock:
            meters = self._poller.status() if self._poller is not None else {}
            polling = self._polling
        mqtt_status = self.mqtt.status()
        influx_status = self.influx.status() if self.influx is not None else {"enabled": False}
        meter_states = {asset: _plain(s) for asset, s in meters.items()}
        for asset in sorted(self._out_of_service):
            meter_states[asset] = {"asset": asset, "state": OUT_OF_SERVICE}
        failing, degraded = [], []
        if not self.mqtt.alive():
            failing.append("mqtt sink thread died")
        if self.influx is not None and not self.influx.alive():
            failing.append("influx sink thread died")
        if self._buffer_failed:
            failing.append("buffer cannot be written")
        for asset, meter in meter_states.items():
            state = meter.get("state")
            if polling and state == DEAD_METER_STATE:
                # A meter thread ends only when the poller is stopped: while we poll, "stopped" means
                # it died of an error nothing caught, and that meter is not polled again until a restart.
                failing.append(f"meter {asset}: polling thread died")
            elif state not in HEALTHY_METER_STATES:
                degraded.append(f"meter {asset}: {state}")
        if self.mqtt.link.identity_suspected:
            degraded.append(f"mqtt: {IDENTITY_PROBLEM}")
        elif mqtt_status["state"] == "waiting_for_primary_host":
            degraded.append(f"mqtt: waiting for primary host application {self.mqtt.link.primary_host_id!r} "
                            "(births and data held in the buffer)")
        elif not mqtt_status["connected"]:
            degraded.append(_why("mqtt not connected", self.mqtt.link.last_error.get()))
        for refused in self.mqtt.link.subscriptions_refused:
            degraded.append(f"mqtt: broker refused the subscription to {refused}")
        if self.influx is not None and not self.influx.healthy:
            degraded.append(_why("influxdb writes failing", self.influx.last_error.get()))
        status = UNHEALTHY if failing else "degraded" if degraded else "ok"
        return {
            "status": status,
            "problems": failing + degraded,
            "thing": self.cfg.thing_name,
            "poll_interval_s": self._poll_interval_s,
            "debug": self.debug,
            "meters": meter_states,
            "settings": self.settings.status(),
            "shadow": self.shadow.status() if self.shadow is not None else {"enabled": False},
            "buffer": self.buffer.stats(),
            "sinks": {"mqtt": mqtt_status, "influx": influx_status},
            "counters": dict(self.counters),
        }


def certificate_not_after(cert_file: Path) -> str | None:
    """The device certificate's expiry (ISO 8601, UTC), reported so the fleet view can warn before it."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError):
        return None
    return cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(error: Any) -> dict[str, Any] | None:
    """A sink error for the shadow: kind and message, not the time (which changes on every retry)."""
    if not isinstance(error, dict):
        return None
    return {"kind": error["kind"], "message": str(error["message"])[:REPORTED_MESSAGE_CHARS]}


def _why(problem: str, error: SinkError | None) -> str:
    """`mqtt not connected (certificate_expired): device certificate ... expired at ...`."""
    return problem if error is None else f"{problem} ({error.kind}): {error.message}"


def _plain(status: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(status) and not isinstance(status, type):
        return {k: _enum_value(v) for k, v in dataclasses.asdict(status).items()}
    if isinstance(status, dict):
        return {k: _enum_value(v) for k, v in status.items()}
    return {k: _enum_value(v) for k, v in vars(status).items()}


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


def print_reading(reading: Reading, seq: int) -> None:
    """--debug: one decoded reading per line on stdout, values with their units."""
    values = {
        name: f"{value:g} {METRICS_BY_NAME[name].unit}".strip() if name in METRICS_BY_NAME else value
        for name, value in reading.values.items()
    }
    line = {"asset": reading.asset, "seq": seq, "timestamp": reading.timestamp_ms, "values": values}
    print(json.dumps(line), file=sys.stdout, flush=True)
