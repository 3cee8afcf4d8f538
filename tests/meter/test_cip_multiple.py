"""The Multiple Service Packet codec against byte strings written out by hand (CIP Vol. 1 layout)."""

from __future__ import annotations

import pytest

from collector.cip_multiple import EmbeddedStatus, MalformedReplyError, decode_reply, encode_request


def test_request_holds_count_offsets_and_one_get_attribute_single_per_pair() -> None:
    assert encode_request(0x04, [(101, 3), (102, 4)]) == bytes.fromhex(
        "0200" "0600" "0e00"  # 2 requests, at offsets 6 and 14 of the request data
        "0e03 20042465 3003".replace(" ", "")  # Get_Attribute_Single class 4 instance 101 attribute 3
        + "0e03 20042466 3004".replace(" ", "")  # ... instance 102 attribute 4
    )


def test_instance_above_255_uses_the_16_bit_segment() -> None:
    assert encode_request(0x04, [(300, 3)]) == bytes.fromhex("0100" "0400" "0e04" "2004" "25002c01" "3003")


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
    ],
)
def test_malformed_replies_are_refused_with_the_reason(body: str, why: str) -> None:
    with pytest.raises(MalformedReplyError, match=why):
        decode_reply(bytes.fromhex(body), expected=2 if body.startswith(("02", "03")) else 1)
