"""The Multiple Service Packet codec against byte strings written out by hand (CIP Vol. 1 layout)."""

from __future__ import annotations

import pytest

from collector.cip_multiple import (
    EmbeddedStatus,
    MalformedReplyError,
    SuccessLayout,
    decode_reply,
    encode_request,
)


def test_request_holds_count_offsets_and_one_get_attribute_single_per_pair() -> None:
    assert encode_request(0x04, [(101, 3), (102, 4)]) == bytes.fromhex(
        "0200" "0600" "0e00"  # 2 requests, at offsets 6 and 14 of the request data
        "0e03 20042465 3003".replace(" ", "")  # Get_Attribute_Single class 4 instance 101 attribute 3
        + "0e03 20042466 3004".replace(" ", "")  # ... instance 102 attribute 4
    )


def test_instance_255_still_fits_the_8_bit_segment() -> None:
    assert encode_request(0x04, [(255, 3)]) == bytes.fromhex("0100" "0400" "0e03" "2004" "24ff" "3003")


@pytest.mark.parametrize(("instance", "segment"), [(256, "25000001"), (300, "25002c01")])
def test_instance_above_255_uses_the_16_bit_segment(instance: int, segment: str) -> None:
    expected = bytes.fromhex("0100" "0400" "0e04" "2004" + segment + "3003")
    assert encode_request(0x04, [(instance, 3)]) == expected


def test_empty_request_list_is_refused_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="requests"):
        encode_request(0x04, [])


def test_reply_is_split_into_data_and_embedded_error_status() -> None:
    body = bytes.fromhex(
        "0200" "0600" "0e00"  # 2 replies, at offsets 6 and 14
        "8e000000" "01020304"  # success, 4 data bytes
        "8e000501" "0000"  # status 0x05 with one extended status word
    )
    first, second = decode_reply(body, expected=2)
    assert first == b"\x01\x02\x03\x04"
    assert isinstance(second, EmbeddedStatus) and second.status == 0x05
    assert second.text.startswith("Destination unknown")


def test_embedded_status_the_table_does_not_know_is_named_unknown() -> None:
    (only,) = decode_reply(bytes.fromhex("0100" "0400" "8e003000"), expected=1)  # 0x30: reserved by CIP
    assert isinstance(only, EmbeddedStatus) and (only.status, only.text) == (0x30, "unknown status")


def test_empty_attribute_in_an_embedded_reply_is_empty_bytes_not_an_error() -> None:
    assert decode_reply(bytes.fromhex("0100" "0400" "8e000000"), expected=1) == [b""]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("0200", "cut inside its offset table"),
        ("0300" "0800" "0c00" "1000" "8e000000" "8e000000" "8e000000", "3 embedded replies, 2 were"),
        ("0200" "0600" "2000" "8e000000" "8e000000", "outside the reply"),
        ("0200" "0600" "0a00" "8e000000" "cc000000", "service 0xcc"),
        ("0200" "0200" "0a00" "8e000000" "8e000000", "outside the reply"),  # offset inside the table
        ("0100" "0400" "8e000002" "0000", "extended status runs past its end"),
        ("", "no reply count"),
        ("0100" "0400", "embedded reply 0 at bytes 4..4 is outside"),  # a whole table, no reply after it
        ("0001", "256 embedded replies, 1 were"),  # the count is a little-endian UINT
    ],
)
def test_malformed_replies_are_refused_with_the_reason(body: str, why: str) -> None:
    with pytest.raises(MalformedReplyError, match=why):
        decode_reply(bytes.fromhex(body), expected=2 if body.startswith(("02", "03")) else 1)


# A reply to [2 REAL, 1 INT] in which both embedded requests succeeded, written out by hand:
# count 2, offsets 6 and 18; then each embedded reply's header (0x8e, reserved, status 0, no extended
# status) and its data: REAL 1.5 (0x3fc00000) and -2.0 (0xc0000000), INT -3 (0xfffd).
SUCCESS_REPLY = "0200" "0600" "1200" "8e000000" "0000c03f" "000000c0" "8e000000" "fdff"


def test_success_layout_reads_every_element_of_every_embedded_reply_in_order() -> None:
    layout = SuccessLayout(["2f", "1h"])
    assert layout.size == 24
    assert layout.elements(bytes.fromhex(SUCCESS_REPLY)) == (1.5, -2.0, -3)


@pytest.mark.parametrize(
    "body",
    [
        SUCCESS_REPLY.replace("8e000000fdff", "8e000500fdff"),  # second reply: status 0x05
        "0200" "0600" "1400" "8e000001" "0000" "0000c03f" "000000c0" "8e000000" "fdff",  # extended status
        SUCCESS_REPLY + "00",  # one byte too many
        SUCCESS_REPLY[:-2],  # one byte short
        "0300" + SUCCESS_REPLY[4:],  # count 3
        SUCCESS_REPLY.replace("0600" "1200", "0600" "1300", 1),  # second offset off by one
        SUCCESS_REPLY.replace("8e000000", "8a000000", 1),  # first reply for another service
    ],
)
def test_success_layout_rejects_any_other_reply(body: str) -> None:
    assert SuccessLayout(["2f", "1h"]).elements(bytes.fromhex(body)) is None


def test_success_layout_of_nothing_is_refused_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="element_formats"):
        SuccessLayout([])
