"""cpppo EtherNet/IP server exposing simulated PM500 Assembly objects, with runtime fault injection.

One process serves several meters, one TCP port each, all bound to 127.0.0.1. cpppo keeps one
global CIP object directory per process, so there is one Assembly object per instance of the
register map, and one Message Router (`MessageRouter`: Multiple Service Packets); they answer
for "the meter of the current connection": every accepted connection's thread records which meter
(port) it belongs to in a thread-local.

Each instance has attribute 3 (data: REAL array, encoded from the shared register map) and
attribute 4 (size in bytes, UINT), like the real meter. Faults per meter, changeable at runtime
through the control server (`collector.simulator.control`):
- `cip_status`: answer every Assembly request with this CIP general status (e.g. 8);
- `delay_ms`: delay every reply on that meter's connections (other meters are not delayed);
- `drop`: close existing connections on their next request and refuse new ones;
- `nan`: register names to serve as NaN; `short`: serve data 4 bytes short;
- `values`: {register name: value} served instead of the model's (e.g. a garbage 3e37 V);
- `size`: {instance: bytes} served by attribute 4 instead of the true size;
- `instance_status`: {instance: status}: only that instance's requests answered with that CIP status;
- `multiple_service`: how the Message Router answers a Multiple Service Packet (0x0A): `accept`
  (cpppo's own implementation, general status 0x1E when an embedded request failed, as CIP says),
  `refuse` (status 0x08, as a device without the service would), `malformed` (a reply cut after
  its count) or `silent` (no answer in time: a device dropping the request). `multiple_requests`
  in the meter's state counts the 0x0A requests it received.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cpppo.dotdict import dotdict
from cpppo.server import network
from cpppo.server.enip import device, logix, ucmm
from cpppo.server.enip.main import enip_srv
from cpppo.server.enip.parser import REAL, UINT

from collector.registers import RegisterMap
from collector.simulator.model import PRODUCT_INFO, MeterModel

log = logging.getLogger(__name__)
BIND_HOST = "127.0.0.1"
# Instances 103/105 (max/demand V and I, 12 REAL) and 104/106 (max/demand power, 17 REAL) of
# 1420-UM001E Appendix C: served (from the real-time instance they mirror) so the commissioning
# probe sees every instance 100..108 like on a real meter. -> (source instance, elements)
MAX_DEMAND = {103: (101, 12), 104: (102, 17), 105: (101, 12), 106: (102, 17)}
NAN = float("nan")
MULTIPLE_SERVICE_MODES = ("accept", "refuse", "malformed", "silent")
SILENT_S = 5.0  # "silent": the reply comes this late, long after any client's timeout
SERVICE_NOT_SUPPORTED = 0x08
EMBEDDED_SERVICE_ERROR = 0x1E


@dataclass
class Faults:
    cip_status: int | None = None
    delay_ms: int = 0
    drop: bool = False
    nan: list[str] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)
    short: bool = False
    size: dict[int, int] = field(default_factory=dict)
    instance_status: dict[int, int] = field(default_factory=dict)
    multiple_service: str = "accept"

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update from the control API; unknown keys are an error naming them."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(known)}")
        for key, value in changes.items():
            if key in ("size", "instance_status"):
                value = {int(k): int(v) for k, v in (value or {}).items()}
            if key == "values":
                value = {str(k): float(v) for k, v in (value or {}).items()}
            if key == "multiple_service" and value not in MULTIPLE_SERVICE_MODES:
                raise ValueError(
                    f"multiple_service must be one of {list(MULTIPLE_SERVICE_MODES)}, got {value!r}"
                )
            setattr(self, key, value)


class SimulatedMeter:
    def __init__(self, index: int, regmap: RegisterMap) -> None:
        self.index = index
        self.port = 0  # bound port, set once listening
        self.model = MeterModel(index, regmap)
        self.faults = Faults()
        self.requests = 0
        self.multiple_requests = 0
        self.regmap = regmap

    def data(self, instance: int) -> bytes:
        self.requests += 1
        if self.regmap.product_info is not None and instance == self.regmap.product_info.instance:
            return struct.pack(f"<{len(PRODUCT_INFO)}H", *PRODUCT_INFO)
        if instance in MAX_DEMAND:  # max/demand twins: the real-time values stand in for them
            source, elements = MAX_DEMAND[instance]
            return self.data(source)[: elements * 4]
        inst = self.regmap.instances[instance]
        faults = self.faults
        raw = self.model.registers()
        raw.update(faults.values)
        for name in faults.nan:
            raw[name] = NAN
        payload = inst.encode(raw)
        return payload[:-4] if faults.short else payload

    def size(self, instance: int) -> int:
        if self.regmap.product_info is not None and instance == self.regmap.product_info.instance:
            true_size = 2 * len(PRODUCT_INFO)
        elif instance in MAX_DEMAND:
            true_size = 4 * MAX_DEMAND[instance][1]
        else:
            true_size = self.regmap.instances[instance].size_bytes
        return self.faults.size.get(instance, true_size)

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "port": self.port,
            "requests": self.requests,
            "multiple_requests": self.multiple_requests,
            "faults": asdict(self.faults),
            "wiring": self.model.wiring,
            "alarms": sorted(self.model.alarms),
            "outputs": sorted(self.model.outputs),
        }


_current = threading.local()  # .meter and .conn of the connection this thread serves


class _Delay:
    """cpppo's enip_srv reads `delay.value` (seconds) afresh before every reply."""

    def __init__(self, meter: SimulatedMeter) -> None:
        self._meter = meter

    @property
    def value(self) -> float:
        return self._meter.faults.delay_ms / 1000.0


class _DataAttribute(device.Attribute):  # type: ignore[misc]
    def __init__(self, instance: int, elements: int) -> None:
        super().__init__("Data", REAL, default=[0.0] * elements)
        self._instance = instance

    def produce(self, start: int = 0, stop: int | None = None) -> bytes:
        return _current.meter.data(self._instance)  # type: ignore[no-any-return]


class _SizeAttribute(device.Attribute):  # type: ignore[misc]
    def __init__(self, instance: int) -> None:
        super().__init__("Size", UINT, default=0)
        self._instance = instance

    def produce(self, start: int = 0, stop: int | None = None) -> bytes:
        return UINT.produce(_current.meter.size(self._instance))  # type: ignore[no-any-return]


class Assembly(device.Object):  # type: ignore[misc]
    """CIP Assembly object (class 0x04) whose replies depend on the connection's meter and faults."""

    class_id = 0x04

    def request(self, data: Any, addr: Any = None) -> bool:
        meter: SimulatedMeter = _current.meter
        if meter.faults.drop:
            with contextlib.suppress(OSError):  # a Multiple Service Packet comes here once per request
                _current.conn.shutdown(socket.SHUT_RDWR)  # the reply's send fails; cpppo ends the session
        status = meter.faults.cip_status or meter.faults.instance_status.get(self.instance_id)
        if status:
            data.service |= 0x80
            data.status = status
            data.input = bytearray(self.produce(data))
            return True
        return bool(super().request(data, addr=addr))


class MessageRouter(logix.Logix):  # type: ignore[misc]
    """Class 0x02 instance 1: cpppo's Multiple Service Packet (0x0A), answered per the meter's faults.

    cpppo routes each embedded request to its object (the Assembly above) and always answers the
    packet itself with status 0; a real device says 0x1E when some embedded request failed.
    """

    def request(self, data: Any, addr: Any = None) -> bool:
        if "multiple" not in data:
            return bool(super().request(data, addr=addr))
        meter: SimulatedMeter = _current.meter
        meter.multiple_requests += 1
        mode = meter.faults.multiple_service
        if mode == "silent":
            time.sleep(SILENT_S)  # this connection's thread only; the client has given up by then
        if mode in ("refuse", "silent"):
            data.service |= 0x80
            data.status = SERVICE_NOT_SUPPORTED
            data.input = bytearray(self.produce(data))
            return True
        handled = bool(super().request(data, addr=addr))
        if data.status == 0 and any(r.get("status") for r in data.multiple.request):
            data.status = EMBEDDED_SERVICE_ERROR
            data.input = bytearray(self.produce(data))
        if mode == "malformed":
            data.input = data.input[:6]  # service, reserved, status, ext. size, reply count: no offsets
        return handled


class _SimpleUCMM(ucmm.UCMM):  # type: ignore[misc]
    """A non-routing device: requests must not carry a route path (like the PM500, `--simple`)."""

    route_path = False


def _create_objects(regmap: RegisterMap) -> None:
    elements = {number: inst.elements for number, inst in regmap.instances.items()}
    if regmap.product_info is not None:
        elements[regmap.product_info.instance] = len(PRODUCT_INFO)
    elements.update({number: count for number, (_, count) in MAX_DEMAND.items()})
    for number, count in elements.items():
        obj = Assembly(name=f"Assembly {number}", instance_id=number)
        obj.attribute[str(regmap.data_attribute)] = _DataAttribute(number, count)
        obj.attribute[str(regmap.size_attribute)] = _SizeAttribute(number)


class SimulatorServer:
    """Serves `count` meters on consecutive ports from `base_port` (0: each an ephemeral port)."""

    def __init__(self, count: int, base_port: int, regmap: RegisterMap) -> None:
        self.meters = [SimulatedMeter(i, regmap) for i in range(count)]
        self._base_port = base_port
        self._controls: list[dotdict] = []
        self._threads: list[threading.Thread] = []
        _create_objects(regmap)

    def start(self, timeout_s: float = 10.0) -> None:
        for meter in self.meters:
            port = self._base_port + meter.index if self._base_port else 0
            self._start_listener(meter, port, timeout_s)

    def _start_listener(self, meter: SimulatedMeter, port: int, timeout_s: float) -> None:
        control = dotdict(done=False, disable=False, latency=0.2, timeout=0.5)
        kwargs = {
            "enip_process": logix.process,
            "UCMM_class": _SimpleUCMM,
            "message_router_class": MessageRouter,
            "delay": _Delay(meter),
            "tags": dotdict(),
            "server": dotdict(control=control),
        }
        if port:
            _check_port_free(port)

        def serve_connection(conn: socket.socket, addr: Any, **kw: Any) -> None:
            if meter.faults.drop:
                conn.close()
                return
            _current.meter, _current.conn = meter, conn
            enip_srv(conn, addr, **kw)

        def listen() -> None:
            network.server_main(address=(BIND_HOST, port), target=serve_connection, kwargs=kwargs)

        thread = threading.Thread(target=listen, name=f"meter-{meter.index}", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while "address" not in control and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.01)
        if "address" not in control:
            raise RuntimeError(
                f"meter {meter.index}: EtherNet/IP listener on {BIND_HOST}:{port} did not start"
            )
        meter.port = int(control["address"][1])
        self._controls.append(control)
        self._threads.append(thread)

    def stop(self) -> None:
        for control in self._controls:
            control["done"] = True
        for thread in self._threads:
            thread.join(2.0)


def _check_port_free(port: int) -> None:
    """cpppo binds with SO_REUSEPORT, which would silently share a port with another simulator;
    probe first (SO_REUSEADDR still lets us rebind over TIME_WAIT) so a clash is a clear error."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((BIND_HOST, port))
        probe.listen(1)
    except OSError as e:
        raise RuntimeError(f"port {BIND_HOST}:{port} is not free: {e.strerror}") from None
    finally:
        probe.close()
