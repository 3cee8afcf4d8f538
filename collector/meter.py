"""Talking to one PowerMonitor 500: a small driver interface and its pycomm3 implementation.

The PM500 is a non-routing EtherNet/IP device: every read is an unconnected explicit message
(UCMM SendRRData, no Forward Open, no Unconnected_Send wrapper, no route path) carrying CIP
Get_Attribute_Single (0x0E) on the Assembly object (class 0x04).

A driver is disposable: after any `CommError` (socket error, timeout, garbled reply) its TCP stream
may hold a late reply for the previous request, so the caller closes it and builds a new one
(`collector.poller` does, with backoff). A CIP error status is different: the meter answered, the
session is fine, so the driver is kept.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Callable
from typing import Protocol

from pycomm3 import CIPDriver
from pycomm3.exceptions import PycommError

from collector.config import MeterConfig
from collector.registers import RegisterMap

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


class MeterDriver(Protocol):
    def read_attribute(self, instance: int, attribute: int) -> bytes:
        """Raw attribute bytes; raises CommError or CipStatusError."""
        ...

    def close(self) -> None: ...


DriverFactory = Callable[[MeterConfig, float], MeterDriver]


class PycommDriver:
    """`MeterDriver` over pycomm3's CIPDriver, opened on construction (raises CommError)."""

    def __init__(self, host: str, port: int, timeout_s: float, assembly_class: int = 0x04) -> None:
        self._assembly_class = assembly_class
        self._cip = CIPDriver(f"{host}:{port}")
        self._cip.socket_timeout = timeout_s
        try:
            self._cip.open()  # type: ignore[no-untyped-call]
        except PycommError as e:
            self._close_quietly()
            raise CommError(f"cannot open EtherNet/IP session to {host}:{port}: {_cause(e)}") from None

    def read_attribute(self, instance: int, attribute: int) -> bytes:
        try:
            tag = self._cip.generic_message(
                service=GET_ATTRIBUTE_SINGLE,
                class_code=self._assembly_class,
                instance=instance,
                attribute=attribute,
                connected=False,
                unconnected_send=False,
                route_path=False,
                return_response_packet=True,
            )
        except PycommError as e:
            raise CommError(f"instance {instance} attribute {attribute}: {_cause(e)}") from None
        response = tag.value
        status = response.service_status
        if status is None:  # no CIP reply at all (encapsulation error or empty/garbled frame)
            raise CommError(f"instance {instance} attribute {attribute}: {response.error or 'no reply'}")
        if status != 0:
            raise CipStatusError(instance, attribute, status, response.error or "error")
        return bytes(response.value or b"")

    def close(self) -> None:
        self._close_quietly()

    def _close_quietly(self) -> None:
        """Closing a broken session may itself fail (UnRegisterSession on a dead socket): ignore."""
        with contextlib.suppress(PycommError):
            self._cip.close()  # type: ignore[no-untyped-call]


def pycomm_driver(meter: MeterConfig, timeout_s: float) -> MeterDriver:
    """The default `DriverFactory`."""
    return PycommDriver(meter.host, meter.port, timeout_s)


def check_sizes(driver: MeterDriver, regmap: RegisterMap, meter_name: str) -> None:
    """Read attribute 4 (size in bytes) of every mapped instance; refuse any mismatch.

    Decoding with the wrong layout would publish plausible-looking wrong numbers, so a mismatch is
    an error naming the meter, the instance, and both sizes.
    """
    for inst in regmap.instances.values():
        raw = driver.read_attribute(inst.instance, regmap.size_attribute)
        if len(raw) < 2:
            raise SizeMismatchError(
                f"meter {meter_name}: instance {inst.instance} size attribute returned {len(raw)} bytes, "
                "expected a UINT"
            )
        actual = int.from_bytes(raw[:2], "little")
        if actual != inst.size_bytes:
            raise SizeMismatchError(
                f"meter {meter_name}: assembly instance {inst.instance} ({inst.title}) is {actual} bytes, "
                f"register map expects {inst.size_bytes} ({inst.elements} {inst.element_type}); "
                "refusing to decode"
            )


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
