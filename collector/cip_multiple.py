"""CIP Multiple Service Packet (service 0x0A to the Message Router): encode the request, split the reply.

One request carries several embedded Get_Attribute_Single requests, so a poll of every assembly
instance costs one network round trip instead of one per instance. The reply carries one embedded
reply per request, each with its own general status: every embedded reply is judged on its own, and a
failed one never hides the others.

Layout (CIP Vol. 1, Message Router object, service 0x0A), all integers little-endian UINT:

    request data: count, offset[count], request[count]
        offsets count from the start of the request data; each request is
        service (0x0E), path size in words, EPATH (class, instance, attribute)
    reply data:   count, offset[count], reply[count]
        each reply is service | 0x80, reserved, general status, extended status size (words),
        extended status words, then the attribute's bytes

Anything else (wrong count, offsets outside the reply, an embedded reply for another service) is a
malformed reply: `MalformedReplyError`, which the caller treats like a refusal of the service.

A poll's reply has one shape when every embedded request succeeded (count, offsets and embedded headers
are then fixed by the requested sizes): `SuccessLayout` recognises it with one comparison and reads
every element with one struct call. Any other reply takes `decode_reply`, which judges each embedded
reply on its own.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import cache

from pycomm3.cip.status_info import SERVICE_STATUS

SERVICE = 0x0A
MESSAGE_ROUTER_CLASS = 0x02
MESSAGE_ROUTER_INSTANCE = 1
EMBEDDED_SERVICE_ERROR = 0x1E  # general status of a reply in which some embedded service failed
GET_ATTRIBUTE_SINGLE = 0x0E
REPLY_BIT = 0x80
# An embedded reply that succeeded: reply service, reserved, general status 0, no extended status.
SUCCESS_HEADER = bytes((GET_ATTRIBUTE_SINGLE | REPLY_BIT, 0, 0, 0))

_UINT = struct.Struct("<H")


class MalformedReplyError(ValueError):
    """The Multiple Service Packet reply cannot be split into one embedded reply per request."""


class EmbeddedStatus:
    """A non-zero general status in one embedded reply (the meter answered that request with an error)."""

    __slots__ = ("status", "text")

    def __init__(self, status: int) -> None:
        self.status = status
        self.text = SERVICE_STATUS.get(status, "unknown status")


def _segment(kind: int, value: int) -> bytes:
    """A logical segment: 8-bit format when the value fits, else 16-bit (padded) format."""
    if value <= 0xFF:
        return bytes((kind, value))
    return bytes((kind | 0x01, 0)) + _UINT.pack(value)


def _get_attribute_single(class_code: int, instance: int, attribute: int) -> bytes:
    path = _segment(0x20, class_code) + _segment(0x24, instance) + _segment(0x30, attribute)
    return bytes((GET_ATTRIBUTE_SINGLE, len(path) // 2)) + path


def encode_request(class_code: int, requests: Sequence[tuple[int, int]]) -> bytes:
    """Request data for one Get_Attribute_Single per (instance, attribute), in that order."""
    if not requests:
        raise ValueError("requests: expected at least one (instance, attribute) pair")
    embedded = [_get_attribute_single(class_code, i, a) for i, a in requests]
    offsets = []
    offset = 2 + 2 * len(embedded)
    for request in embedded:
        offsets.append(offset)
        offset += len(request)
    return b"".join([_UINT.pack(len(embedded)), *map(_UINT.pack, offsets), *embedded])


@cache
def _offset_table(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}H")


def decode_reply(body: bytes, expected: int) -> list[bytes | EmbeddedStatus]:
    """Split reply data into `expected` embedded results: the attribute bytes, or the error status.

    On the hot path (once per poll): one struct call for the offset table, byte indexing for the rest.
    """
    size = len(body)
    if size < 2:
        raise MalformedReplyError(f"reply of {size} bytes has no reply count")
    count = body[0] | body[1] << 8
    if count != expected:
        raise MalformedReplyError(f"reply holds {count} embedded replies, {expected} were requested")
    table_end = 2 + 2 * count
    if size < table_end:
        raise MalformedReplyError(f"reply of {size} bytes is cut inside its offset table")
    offsets = _offset_table(count).unpack_from(body, 2)
    ends = (*offsets[1:], size)
    results: list[bytes | EmbeddedStatus] = []
    for k in range(count):
        start, end = offsets[k], ends[k]
        if start < table_end or start + 4 > end or end > size:
            raise MalformedReplyError(f"embedded reply {k} at bytes {start}..{end} is outside the reply")
        if body[start] != GET_ATTRIBUTE_SINGLE | REPLY_BIT:
            raise MalformedReplyError(
                f"embedded reply {k} is for service 0x{body[start]:02x}, expected 0x8e"
            )
        data_start = start + 4 + 2 * body[start + 3]
        if data_start > end:
            raise MalformedReplyError(f"embedded reply {k}: extended status runs past its end")
        status = body[start + 2]
        results.append(EmbeddedStatus(status) if status else body[data_start:end])
    return results


class SuccessLayout:
    """The reply to a request for `element_formats` (struct codes per embedded request, e.g. `"12f"`)
    when every embedded request succeeded with no extended status.

    `elements(body)` returns every element of every embedded reply as one flat tuple (request order),
    or None when `body` is not exactly that reply (an embedded error, another size, any oddity): the
    caller then splits it with `decode_reply`. Two struct calls and a tuple comparison instead of a
    Python loop per embedded reply: this runs once per poll per meter.
    """

    def __init__(self, element_formats: Sequence[str]) -> None:
        if not element_formats:
            raise ValueError("element_formats: expected at least one embedded reply")
        sizes = [struct.calcsize(f"<{f}") for f in element_formats]
        count = len(sizes)
        offsets, position = [], 2 + 2 * count
        for size in sizes:
            offsets.append(position)
            position += len(SUCCESS_HEADER) + size
        self.size = position
        header = f"{len(SUCCESS_HEADER)}s"
        # The structure with the data skipped, and the data with the structure skipped.
        self._structure = struct.Struct(f"<{1 + count}H" + "".join(f"{header}{size}x" for size in sizes))
        self._expected = (count, *offsets, *(SUCCESS_HEADER,) * count)
        skip = f"{len(SUCCESS_HEADER)}x"
        self._data = struct.Struct(f"<{2 + 2 * count}x" + "".join(f"{skip}{f}" for f in element_formats))

    def elements(self, body: bytes) -> tuple[float | int, ...] | None:
        if len(body) != self.size or self._structure.unpack(body) != self._expected:
            return None
        return self._data.unpack(body)
