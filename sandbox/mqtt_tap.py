"""An MQTT 3.1.1 tap between one client and the broker: the wire as a judge sees it, and a network to break.

`MqttTap` listens on 127.0.0.1 with TLS (a server certificate of the dev CA, client certificate
required, like the broker) and, for each client connection, first opens a TLS connection to the real
broker presenting `upstream_cert` (the identity the broker's ACL checks; in tests the collector's own
certificate). Only then does it complete the client's handshake, so a broker that is down looks like
a broker that is down: the client never gets to send CONNECT. Packets are forwarded whole, both ways,
and each is recorded as a `Packet` decoded from the bytes by the rules of the OASIS MQTT 3.1.1
standard (section 2 fixed header, section 3 control packets), with code written here, not paho's:
CONNECT with its clean-session flag and will (topic, payload, QoS, retain), PUBLISH with QoS, retain,
dup, packet id and payload, SUBSCRIBE/UNSUBSCRIBE filters, CONNACK/SUBACK return codes, acks.

Faults, each affecting the connections of this tap only:
- `cut()`: close every connection now, both sides, without DISCONNECT (the broker publishes the
  client's will), like a network failure;
- `refuse(n)`: answer the next `n` CONNECT packets with CONNACK 5 (not authorized) and close;
- `blackhole()`: the open connections stay open but forward nothing more, in either direction, until
  they are closed (a half-open network path: TCP never loses bytes and then goes on, so neither does
  the tap); the packets that went nowhere are recorded with `forwarded=False`. New connections work.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.ca import DevCA
from sandbox.net import LOOPBACK, free_port

CLIENT_TO_BROKER = "client->broker"
BROKER_TO_CLIENT = "broker->client"
TYPES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
         8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
         14: "DISCONNECT"}
CONNACK_NOT_AUTHORIZED = bytes([0x20, 0x02, 0x00, 0x05])


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class Packet:
    """One MQTT control packet as it crossed the tap."""

    connection: int  # 1, 2, ... in the order the tap accepted client connections
    direction: str  # CLIENT_TO_BROKER | BROKER_TO_CLIENT
    at: float  # time.time() when the tap had read it
    type: str  # CONNECT, PUBLISH, ...
    raw: bytes
    forwarded: bool = True
    # PUBLISH
    topic: str | None = None
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None  # PUBLISH QoS > 0, PUBACK, (UN)SUBSCRIBE, (UN)SUBACK
    # CONNECT
    client_id: str | None = None
    clean_session: bool | None = None
    keepalive: int | None = None
    protocol_level: int | None = None
    will: Will | None = None
    # SUBSCRIBE: [(filter, requested QoS)], UNSUBSCRIBE: [(filter, None)]
    filters: list[tuple[str, int | None]] = field(default_factory=list)
    # CONNACK: [return code]; SUBACK: [granted QoS or 0x80 per filter]
    return_codes: list[int] = field(default_factory=list)


class MqttDecodeError(ValueError):
    """Bytes that are not an MQTT 3.1.1 control packet."""


def _string(data: bytes, pos: int) -> tuple[str, int]:
    """A UTF-8 encoded string (section 1.5.3): two-byte length, then the bytes."""
    raw, pos = _binary(data, pos)
    return raw.decode("utf-8"), pos


def _binary(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 2 > len(data):
        raise MqttDecodeError("truncated length prefix")
    length = int.from_bytes(data[pos:pos + 2], "big")
    if pos + 2 + length > len(data):
        raise MqttDecodeError("truncated string")
    return data[pos + 2:pos + 2 + length], pos + 2 + length


def decode(raw: bytes, connection: int = 0, direction: str = CLIENT_TO_BROKER, at: float = 0.0) -> Packet:
    """One whole control packet (fixed header included) as a `Packet`."""
    kind = raw[0] >> 4
    flags = raw[0] & 0x0F
    if kind not in TYPES:
        raise MqttDecodeError(f"packet type {kind}")
    pos = 1
    while raw[pos] & 0x80:  # remaining length (section 2.2.3): the header's length is all we need
        pos += 1
    body = raw[pos + 1:]
    packet = Packet(connection, direction, at, TYPES[kind], raw)
    if kind == 1:
        _connect(packet, body)
    elif kind == 2:
        packet.return_codes = [body[1]]
    elif kind == 3:
        packet.qos, packet.retain, packet.dup = (flags >> 1) & 3, bool(flags & 1), bool(flags & 8)
        packet.topic, p = _string(body, 0)
        if packet.qos:
            packet.packet_id, p = int.from_bytes(body[p:p + 2], "big"), p + 2
        packet.payload = body[p:]
    elif kind in (4, 5, 6, 7, 11):
        packet.packet_id = int.from_bytes(body[:2], "big")
    elif kind in (8, 10):
        packet.packet_id, p = int.from_bytes(body[:2], "big"), 2
        while p < len(body):
            topic_filter, p = _string(body, p)
            if kind == 8:
                packet.filters.append((topic_filter, body[p]))
                p += 1
            else:
                packet.filters.append((topic_filter, None))
    elif kind == 9:
        packet.packet_id = int.from_bytes(body[:2], "big")
        packet.return_codes = list(body[2:])
    return packet


def _connect(packet: Packet, body: bytes) -> None:
    """CONNECT (section 3.1): protocol name and level, connect flags, keep alive, then the payload."""
    name, p = _string(body, 0)
    if name != "MQTT":
        raise MqttDecodeError(f"protocol name {name!r}")
    packet.protocol_level, flags = body[p], body[p + 1]
    packet.keepalive, p = int.from_bytes(body[p + 2:p + 4], "big"), p + 4
    packet.clean_session = bool(flags & 0x02)
    packet.client_id, p = _string(body, p)
    if flags & 0x04:
        topic, p = _string(body, p)
        payload, p = _binary(body, p)
        packet.will = Will(topic, payload, (flags >> 3) & 3, bool(flags & 0x20))


def _read_packet(sock: ssl.SSLSocket) -> bytes | None:
    """The next whole packet from `sock`; None at end of stream."""
    header = _read_exactly(sock, 2)
    if header is None:
        return None
    length, multiplier, raw = header[1] & 0x7F, 128, bytearray(header)
    while raw[-1] & 0x80:
        more = _read_exactly(sock, 1)
        if more is None:
            return None
        raw += more
        length += (more[0] & 0x7F) * multiplier
        multiplier *= 128
    rest = _read_exactly(sock, length)
    return None if rest is None else bytes(raw + rest)


def _read_exactly(sock: ssl.SSLSocket, n: int) -> bytes | None:
    data = bytearray()
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except (OSError, ValueError):
            return None
        if not chunk:
            return None
        data += chunk
    return bytes(data)


class _Connection:
    def __init__(self, number: int, client: ssl.SSLSocket, broker: ssl.SSLSocket) -> None:
        self.number, self.client, self.broker = number, client, broker
        self.blackholed = False
        self._closed = threading.Event()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for sock in (self.client, self.broker):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class MqttTap:
    """See the module docstring. `start()` returns once it listens on `port`; `stop()` closes all."""

    def __init__(
        self,
        workdir: Path,
        ca: DevCA,
        broker_host: str,
        broker_port: int,
        upstream_cert: Path,
        upstream_key: Path,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self._broker = (broker_host, broker_port)
        cert, key = ca.issue("localhost", workdir / "tap-server", server_hostnames=["localhost"],
                             ip_addresses=[LOOPBACK])
        self._server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.cert_path))
        self._server_ctx.verify_mode = ssl.CERT_REQUIRED
        self._server_ctx.load_cert_chain(str(cert), str(key))
        self._client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca.cert_path))
        self._client_ctx.load_cert_chain(str(upstream_cert), str(upstream_key))
        self._lock = threading.Condition()
        self._packets: list[Packet] = []
        self._connections: list[_Connection] = []
        self._accepted = 0
        self._refuse = 0
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------------

    def start(self) -> MqttTap:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.port))
        listener.listen(16)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="mqtt-tap", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):  # shutdown wakes the accept() blocked in the tap's thread
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self.cut()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def cut(self) -> int:
        """Close every open connection (no DISCONNECT: the broker sends the will); how many there were."""
        with self._lock:
            connections, self._connections = self._connections, []
        for c in connections:
            c.close()
        return len(connections)

    def refuse(self, count: int) -> None:
        """Answer the next `count` CONNECT packets with CONNACK 5 (not authorized) and close."""
        with self._lock:
            self._refuse = count

    def blackhole(self) -> int:
        """The open connections forward nothing more (they stay open); how many there were."""
        with self._lock:
            for c in self._connections:
                c.blackholed = True
            return len(self._connections)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    # -- the record ------------------------------------------------------------------------------

    def packets(self, type_: str | None = None, direction: str | None = None) -> list[Packet]:
        with self._lock:
            return [p for p in self._packets
                    if (type_ is None or p.type == type_) and (direction is None or p.direction == direction)]

    def wait_for(self, predicate: Callable[[Sequence[Packet]], bool], timeout: float = 30.0) -> list[Packet]:
        """Block until `predicate(packets so far)`; TimeoutError naming what did cross otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self._packets):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    kinds = sorted({f"{p.type} {p.topic or ''}".strip() for p in self._packets})
                    raise TimeoutError(f"condition not met within {timeout:g}s; {len(self._packets)} "
                                       f"packets crossed: {kinds[:30]}")
                self._lock.wait(remaining)
            return list(self._packets)

    def _record(self, packet: Packet) -> None:
        with self._lock:
            self._packets.append(packet)
            self._lock.notify_all()

    # -- plumbing --------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while True:
            listener = self._listener
            if listener is None:
                return
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), name="mqtt-tap-conn", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            broker = self._client_ctx.wrap_socket(
                socket.create_connection(self._broker, timeout=10), server_hostname=self._broker[0])
        except OSError:
            sock.close()  # the broker is down: so is this endpoint
            return
        try:
            client = self._server_ctx.wrap_socket(sock, server_side=True)
        except OSError:
            broker.close()
            sock.close()
            return
        for s in (client, broker):
            s.settimeout(None)
        with self._lock:
            self._accepted += 1
            connection = _Connection(self._accepted, client, broker)
            self._connections.append(connection)
        first = _read_packet(client)
        if first is None:
            connection.close()
            return
        packet = decode(first, connection.number, CLIENT_TO_BROKER, time.time())
        with self._lock:
            refuse = packet.type == "CONNECT" and self._refuse > 0
            if refuse:
                self._refuse -= 1
        packet.forwarded = not refuse
        self._record(packet)
        if refuse:
            try:
                client.sendall(CONNACK_NOT_AUTHORIZED)
            finally:
                self._drop(connection)
            return
        broker.sendall(first)
        threading.Thread(target=self._pump, args=(connection, broker, client, BROKER_TO_CLIENT),
                         name="mqtt-tap-down", daemon=True).start()
        self._pump(connection, client, broker, CLIENT_TO_BROKER)

    def _pump(
        self, connection: _Connection, source: ssl.SSLSocket, sink: ssl.SSLSocket, direction: str
    ) -> None:
        while True:
            raw = _read_packet(source)
            if raw is None:
                self._drop(connection)
                return
            packet = decode(raw, connection.number, direction, time.time())
            with self._lock:
                packet.forwarded = not connection.blackholed
            self._record(packet)
            if packet.forwarded:
                try:
                    sink.sendall(raw)
                except OSError:
                    self._drop(connection)
                    return

    def _drop(self, connection: _Connection) -> None:
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)
        connection.close()
