"""Talking to one PowerMonitor 500: a small driver interface and its pycomm3 implementation.

The PM500 is a non-routing EtherNet/IP device: every read is an unconnected explicit message
(UCMM SendRRData, no Forward Open, no Unconnected_Send wrapper, no route path) carrying CIP
Get_Attribute_Single (0x0E) on the Assembly object (class 0x04), either alone (`read_attribute`) or
several embedded in one Multiple Service Packet (`read_multiple`, one round trip for a whole poll).
Whether a meter accepts the Multiple Service Packet is decided per connection by
`collector.assembly_reader.AssemblyReader`.

A driver is disposable: after any `CommError` (socket error, timeout, garbled reply) its TCP stream
may hold a late reply for the previous request, so the caller closes it and builds a new one
(`collector.poller` does, with backoff). A CIP error status is different: the meter answered, the
session is fine, so the driver is kept.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Callable, Sequence
from typing import Protocol

from pycomm3 import CIPDriver
from pycomm3.exceptions import PycommError
from pycomm3.packets.cip import GenericUnconnectedRequestPacket, GenericUnconnectedResponsePacket

from collector import cip_multiple
from collector.config import MeterConfig

GET_ATTRIBUTE_SINGLE = 0x0E

# pycomm3 logs every failed generic message at ERROR (once per poll); the poller logs once per
# state change instead, with the meter's name. Keep pycomm3's own logger for real emergencies.
logging.getLogger("pycomm3").setLevel(logging.CRITICAL)


class MeterError(Exception):
    """Base for errors talking to one meter."""


class CommError(MeterError):
    """Transport failure (connect, timeout, broken or garbled stream): replace the driver."""


class CipStatusError(MeterError):
    """The meter answered with a non-zero CIP general status (e.g. 0x08 service not supported)."""

    def __init__(self, instance: int, attribute: int, status: int, text: str) -> None:
        super().__init__(f"instance {instance} attribute {attribute}: CIP status 0x{status:02x} ({text})")
        self.instance, self.attribute, self.status = instance, attribute, status


class SizeMismatchError(MeterError):
    """The meter's assembly size (attribute 4) differs from the register map: refuse to decode."""


class SizeUnverifiableError(SizeMismatchError):
    """Attribute 4 (size) answered with a CIP error: refused like a mismatch (with backoff), but counted
    as `cip_status`: the meter did answer, it is not a layout problem."""


class MultipleServiceRefusedError(MeterError):
    """The meter refused the Multiple Service Packet (e.g. CIP status 0x08) or sent a reply that cannot
    be split into its embedded replies: it has to be read one request at a time."""


class MeterDriver(Protocol):
    def read_attribute(self, instance: int, attribute: int) -> bytes:
        """Raw attribute bytes; raises CommError or CipStatusError."""
        ...

    def read_multiple(self, requests: Sequence[tuple[int, int]]) -> bytes:
        """Every (instance, attribute) in ONE Multiple Service Packet: the reply data (count, offsets,
        embedded replies; `collector.cip_multiple` splits it). Raises CommError, or
        MultipleServiceRefusedError when the meter refuses the service."""
        ...

    def close(self) -> None: ...


DriverFactory = Callable[[MeterConfig, float], MeterDriver]


class PycommDriver:
    """`MeterDriver` over pycomm3's CIPDriver, opened on construction (raises CommError).

    A poll sends the same requests every time, so each request packet is built once per session and
    handed to `CIPDriver.send` again (pycomm3 caches a packet's encoded message): building it afresh
    through `generic_message` was about a quarter of the collector's CPU per poll.
    """

    def __init__(self, host: str, port: int, timeout_s: float, assembly_class: int = 0x04) -> None:
        self._assembly_class = assembly_class
        self._packets: dict[object, GenericUnconnectedRequestPacket] = {}
        self._cip = CIPDriver(f"{host}:{port}")
        self._cip.socket_timeout = timeout_s
        try:
            self._cip.open()  # type: ignore[no-untyped-call]
        except PycommError as e:
            self._close_quietly()
            raise CommError(f"cannot open EtherNet/IP session to {host}:{port}: {_cause(e)}") from None

    def read_attribute(self, instance: int, attribute: int) -> bytes:
        where = f"instance {instance} attribute {attribute}"
        packet = self._packets.get((instance, attribute))
        if packet is None:
            packet = self._packets[(instance, attribute)] = GenericUnconnectedRequestPacket(
                service=GET_ATTRIBUTE_SINGLE,
                class_code=self._assembly_class,
                instance=instance,
                attribute=attribute,
            )
        response, status = self._send(packet, where)
        if status != 0:
            raise CipStatusError(instance, attribute, status, response.error or "error")
        return bytes(response.value or b"")

    def read_multiple(self, requests: Sequence[tuple[int, int]]) -> bytes:
        key = tuple(requests)
        packet = self._packets.get(key)
        if packet is None:
            packet = self._packets[key] = GenericUnconnectedRequestPacket(
                service=cip_multiple.SERVICE,
                class_code=cip_multiple.MESSAGE_ROUTER_CLASS,
                instance=cip_multiple.MESSAGE_ROUTER_INSTANCE,
                request_data=cip_multiple.encode_request(self._assembly_class, key),
            )
        response, status = self._send(packet, "Multiple Service Packet")
        if status not in (0, cip_multiple.EMBEDDED_SERVICE_ERROR):
            raise MultipleServiceRefusedError(
                f"Multiple Service Packet refused: CIP status 0x{status:02x} ({response.error or 'error'})"
            )
        raw: bytes = response.raw
        # CIP reply in SendRRData: service at 40, status at 42, extended status size (words) at 43.
        if len(raw) < 44 or len(raw) < 44 + 2 * raw[43]:
            raise MultipleServiceRefusedError(
                f"Multiple Service Packet reply malformed: {len(raw)} bytes end inside its header"
            )
        return raw[44 + 2 * raw[43] :]

    def _send(
        self, packet: GenericUnconnectedRequestPacket, where: str
    ) -> tuple[GenericUnconnectedResponsePacket, int]:
        """Send one unconnected explicit message: its reply and CIP general status. A reply without a
        CIP status is a CommError."""
        try:
            response = self._cip.send(packet)
        except PycommError as e:
            raise CommError(f"{where}: {_cause(e)}") from None
        status = response.service_status
        if status is None:  # no CIP reply at all (encapsulation error, garbled frame)
            raise CommError(f"{where}: {response.error or 'no reply'}")
        return response, status

    def close(self) -> None:
        self._close_quietly()

    def _close_quietly(self) -> None:
        """Closing a broken session may itself fail (UnRegisterSession on a dead socket): ignore."""
        with contextlib.suppress(PycommError):
            self._cip.close()  # type: ignore[no-untyped-call]


def pycomm_driver(meter: MeterConfig, timeout_s: float) -> MeterDriver:
    """The default `DriverFactory`."""
    return PycommDriver(meter.host, meter.port, timeout_s)


def _cause(e: BaseException) -> str:
    """pycomm3 wraps the socket error; show the innermost message (e.g. 'timed out')."""
    parts = [str(e)]
    while e.__cause__ is not None:
        e = e.__cause__
        # pycomm3 parses an empty recv() (peer closed) as a too-short header
        parts.append(
            "connection closed by the meter" if isinstance(e, struct.error) else str(e) or type(e).__name__
        )
    return ": ".join(p for p in parts if p)
