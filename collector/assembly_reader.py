"""Reading all of one meter's assembly instances per poll, in one round trip when the meter allows it.

Every instance the register map lists is read each poll (so an instance added to the map is polled
without a code change). With a Multiple Service Packet that is one request/reply on the plant network
instead of one per instance. Whether a PowerMonitor 500 accepts service 0x0A is not documented, so it
is a capability probed per connection:

- the size check at connect (attribute 4 of every instance) is itself sent as a Multiple Service
  Packet: that is the probe, and it costs no extra round trip;
- a refusal (any general status but 0 and 0x1E "embedded service error") or a malformed reply, at the
  probe or at any later poll, switches this connection to one Get_Attribute_Single per instance for
  good, and the same poll is re-read that way at once, so the meter is polled without a gap and
  0x0A is not retried on every poll;
- a new connection (a new reader, after a reconnect) probes again: a meter whose firmware was
  updated, or a transient refusal, gets another chance;
- a meter that does not answer the probe at all (a timeout: the connection is then replaced) is
  read one request at a time on the next connection (`probe=False`), so a device that silently drops
  0x0A is still polled; the connection after that probes again.

A poll whose reply is exactly what the map expects (every instance answered, at its size) comes back
as one flat tuple of every element, read with one struct call (`collector.cip_multiple.SuccessLayout`)
and decoded with one compiled plan (`decoder`): that is every poll of a healthy meter. Any other
reply is split embedded reply by embedded reply, each judged on its own (its status; its size by the
register map): the caller gets one result per instance and decodes the good ones even when another
one failed.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector import cip_multiple
from collector.meter import (
    CipStatusError,
    MeterDriver,
    MultipleServiceRefusedError,
    SizeMismatchError,
    SizeUnverifiableError,
)
from collector.registers import ElementDecoder, InstanceMap, RegisterMap

MULTIPLE_SERVICE_PACKET = "multiple_service_packet"  # one 0x0A request per poll
SINGLE_REQUESTS = "single_requests"  # one 0x0E request per instance per poll
UNANSWERED_PROBE = "the Multiple Service Packet probe got no answer on the previous connection"


class AssemblyReader:
    """One connection's reads; `mode` and `fallback_reason` say how it reads (served by /health)."""

    def __init__(self, driver: MeterDriver, regmap: RegisterMap, meter_name: str, probe: bool = True) -> None:
        self.driver = driver
        self.meter_name = meter_name
        self.instances: tuple[InstanceMap, ...] = tuple(regmap.instances.values())
        self._data_requests = tuple((i.instance, regmap.data_attribute) for i in self.instances)
        self._size_requests = tuple((i.instance, regmap.size_attribute) for i in self.instances)
        self._data_layout = cip_multiple.SuccessLayout([i.element_format for i in self.instances])
        self.decoder = ElementDecoder.over(self.instances)  # for the flat tuple `read_data` returns
        self.mode = MULTIPLE_SERVICE_PACKET if probe else SINGLE_REQUESTS
        self.fallback_reason = None if probe else UNANSWERED_PROBE

    def check_sizes(self) -> None:
        """Read attribute 4 (size in bytes) of every instance; refuse any mismatch (SizeMismatchError).

        Decoding with the wrong layout would publish plausible-looking wrong numbers, so a mismatch is
        an error naming the meter, the instance, and both sizes. Also the Multiple Service probe.
        """
        for inst, result in zip(self.instances, self._read(self._size_requests), strict=True):
            if isinstance(result, CipStatusError):
                raise SizeUnverifiableError(
                    f"meter {self.meter_name}: cannot verify the assembly size: {result}"
                )
            if len(result) < 2:
                raise SizeMismatchError(
                    f"meter {self.meter_name}: instance {inst.instance} size attribute returned "
                    f"{len(result)} bytes, expected a UINT"
                )
            actual = int.from_bytes(result[:2], "little")
            if actual != inst.size_bytes:
                raise SizeMismatchError(
                    f"meter {self.meter_name}: assembly instance {inst.instance} ({inst.title}) is "
                    f"{actual} bytes, register map expects {inst.size_bytes} "
                    f"({inst.elements} {inst.element_type}); refusing to decode"
                )

    def read_data(self) -> tuple[float | int, ...] | list[bytes | CipStatusError]:
        """One poll of every instance's data attribute. Every instance answered at its size in one
        Multiple Service Packet: all their elements as one flat tuple (order of `instances`; decode it
        with `decoder`). Otherwise a list with, per instance, its bytes or its CIP error.
        Raises CommError when the meter cannot be talked to."""
        if self.mode == MULTIPLE_SERVICE_PACKET:
            try:
                body = self.driver.read_multiple(self._data_requests)
                elements = self._data_layout.elements(body)
                return elements if elements is not None else self._split(body, self._data_requests)
            except MultipleServiceRefusedError as e:
                self._fall_back(e)
        return self._read_singly(self._data_requests)

    def _read(self, requests: tuple[tuple[int, int], ...]) -> list[bytes | CipStatusError]:
        if self.mode == MULTIPLE_SERVICE_PACKET:
            try:
                return self._split(self.driver.read_multiple(requests), requests)
            except MultipleServiceRefusedError as e:
                self._fall_back(e)
        return self._read_singly(requests)

    def _fall_back(self, refusal: MultipleServiceRefusedError) -> None:
        """This connection reads one request at a time from now on (this poll included)."""
        self.mode, self.fallback_reason = SINGLE_REQUESTS, str(refusal)

    def _read_singly(self, requests: tuple[tuple[int, int], ...]) -> list[bytes | CipStatusError]:
        return [self._read_one(instance, attribute) for instance, attribute in requests]

    @staticmethod
    def _split(body: bytes, requests: Sequence[tuple[int, int]]) -> list[bytes | CipStatusError]:
        """Per request its bytes or its embedded error; a reply that cannot be split is a refusal."""
        try:
            results = cip_multiple.decode_reply(body, len(requests))
        except cip_multiple.MalformedReplyError as e:
            raise MultipleServiceRefusedError(f"Multiple Service Packet reply malformed: {e}") from None
        return [
            CipStatusError(i, a, r.status, r.text) if isinstance(r, cip_multiple.EmbeddedStatus) else r
            for (i, a), r in zip(requests, results, strict=True)
        ]

    def _read_one(self, instance: int, attribute: int) -> bytes | CipStatusError:
        try:
            return self.driver.read_attribute(instance, attribute)
        except CipStatusError as e:
            return e
