"""A Sparkplug B 3.0 Primary Host Application for the sandbox and the demo, run from the bundle that
`cli.py hosts provision` writes (its `host.yaml`, certificate and key): what Ignition's MQTT Engine
would be on a plant network.

`python -m sandbox.sparkplug_host --bundle DIR [--ready-file FILE] [--rebirth-file FILE]`

It does what the specification asks of a host's session (chapter 5, "Sparkplug Host Application
Session Establishment"): CONNECT with its death certificate as will (`spBv1.0/STATE/<host id>`,
`{"online": false, "timestamp": T}`, QoS 1, retained), subscribe to the edge nodes and its own STATE,
then publish `{"online": true, "timestamp": T}` (QoS 1, retained) with the same T. On each reconnect T is
the new CONNECT's time. On SIGTERM/SIGINT it publishes the offline STATE, then DISCONNECTs.

It logs one line per Sparkplug message it receives (type, edge node, device, seq, metric count). With
`--rebirth-file` it writes the payload of an NCMD `Node Control/Rebirth` = true there, so a person can
ask an edge node to rebirth by publishing that file (the demo prints the `mosquitto_pub` line).
`--ready-file` is written once the online STATE is acknowledged.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from collector.proto.sparkplug_b_pb2 import DataType, Payload
from collector.sparkplug_b import REBIRTH

HOST_FILE = "host.yaml"  # devices.hosts.HOST_FILE (sandbox may not import devices)
log = logging.getLogger("sparkplug_host")


def state_payload(online: bool, timestamp: int) -> bytes:
    return json.dumps({"online": online, "timestamp": timestamp}).encode()


def rebirth_request(timestamp: int) -> bytes:
    """NCMD payload: `Node Control/Rebirth` = true (spec 6.4.x: a host's rebirth request)."""
    request = Payload(timestamp=timestamp)
    request.metrics.add(name=REBIRTH, datatype=DataType.Boolean, boolean_value=True)
    payload: bytes = request.SerializeToString()
    return payload


def describe(topic: str, payload: bytes) -> str:
    """One log line for a received message: what, from whom, seq and metric count."""
    parts = topic.split("/")
    if parts[1] == "STATE":
        return f"STATE {parts[2]} {payload.decode(errors='replace')}"
    kind, node = parts[2], parts[3]
    device = f" {parts[4]}" if len(parts) > 4 else ""
    try:
        message = Payload.FromString(payload)
    except Exception as exc:  # a host logs what it cannot read and carries on
        return f"{kind} {node}{device}: undecodable ({exc})"
    seq = f" seq={message.seq}" if message.HasField("seq") else ""
    return f"{kind} {node}{device}{seq} metrics={len(message.metrics)}"


class PrimaryHost:
    """The host's MQTT session(s), from its bundle."""

    def __init__(self, bundle: Path) -> None:
        settings: dict[str, Any] = yaml.safe_load((bundle / HOST_FILE).read_text())
        self.host_id: str = settings["host_id"]
        mqtt_settings = settings["mqtt"]
        self.state_topic: str = settings["sparkplug"]["state_topic"]
        self.filters: list[str] = [*settings["sparkplug"]["subscribe"], self.state_topic]
        self.endpoint, self.port = mqtt_settings["endpoint"], int(mqtt_settings["port"])
        self.timestamp = 0
        self.online = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=mqtt_settings["client_id"],
                             clean_session=True)
        client.tls_set(ca_certs=str(bundle / mqtt_settings["ca_file"]),
                       certfile=str(bundle / mqtt_settings["cert_file"]),
                       keyfile=str(bundle / mqtt_settings["key_file"]))
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = lambda c, u, msg: log.info("%s", describe(msg.topic, bytes(msg.payload)))
        self.client = client

    def _new_will(self) -> None:
        self.timestamp = int(time.time() * 1000)
        self.client.will_set(self.state_topic, state_payload(False, self.timestamp), qos=1, retain=True)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.warning("CONNACK refused: %s", rc)
            return
        client.subscribe([(f, 1) for f in self.filters])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode],
                      props: Any) -> None:
        if any(c.is_failure for c in codes):
            log.warning("subscription refused: %s", codes)
        # Subscribed first, then the birth: the host sees every edge node's reaction to it.
        client.publish(self.state_topic, state_payload(True, self.timestamp), qos=1, retain=True)
        log.info("online as %s (STATE timestamp %d)", self.host_id, self.timestamp)
        self.online.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                       props: Any) -> None:
        self.online.clear()
        log.warning("disconnected (%s); reconnecting with a new STATE timestamp", rc)
        self._new_will()  # the next CONNECT carries it

    def start(self) -> None:
        self._new_will()
        self.client.connect(self.endpoint, self.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        """Intentional disconnect: the offline STATE first (same timestamp), then DISCONNECT."""
        if self.client.is_connected():
            self.client.publish(self.state_topic, state_payload(False, self.timestamp), qos=1,
                                retain=True).wait_for_publish(10)
        self.client.on_disconnect = None
        self.client.disconnect()
        self.client.loop_stop()
        log.info("offline")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.sparkplug_host",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True, help="what `cli.py hosts provision` wrote")
    parser.add_argument("--ready-file", type=Path, help="written once the online STATE is out")
    parser.add_argument("--rebirth-file", type=Path, help="write an NCMD rebirth request payload here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.rebirth_file:
        args.rebirth_file.write_bytes(rebirth_request(int(time.time() * 1000)))
    host = PrimaryHost(args.bundle)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    host.start()
    if args.ready_file:
        while not host.online.wait(0.5):
            if stop.is_set():
                break
        else:
            args.ready_file.write_text(str(host.timestamp))
    stop.wait()
    host.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
