"""RecordIO framing, checked against an independent decoder written from the format's text."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.stage.pipe import recordio
from emulator.stage.pipe.recordio import Flag, RecordFramer, RecordLengthError
from tests.fixtures.pipe import decode, join_multipart


def test_header_bytes_are_little_endian_magic_then_length() -> None:
    assert recordio.header(5) == bytes.fromhex("0a23d7ce") + bytes.fromhex("05000000")
    assert recordio.header(0) == bytes.fromhex("0a23d7ce00000000")
    assert recordio.header(1, Flag.END)[4:] == struct.pack("<I", (3 << 29) | 1)


@pytest.mark.parametrize("length", [-1, 1 << 29])
def test_header_refuses_lengths_outside_29_bits(length: int) -> None:
    with pytest.raises(ValueError):
        recordio.header(length)
    with pytest.raises(ValueError):
        recordio.pack_header_into(bytearray(8), 0, length)


@pytest.mark.parametrize("length", [0, 5, recordio.MAX_LENGTH])
def test_a_header_packed_into_a_buffer_is_the_same_header(length: int) -> None:
    buffer = bytearray(b"x" * 12)
    recordio.pack_header_into(buffer, 2, length)
    assert buffer == b"xx" + recordio.header(length) + b"xx"


@pytest.mark.parametrize(("length", "pad"), [(0, 0), (1, 3), (2, 2), (3, 1), (4, 0), (5, 3)])
def test_padding_reaches_a_multiple_of_four(length: int, pad: int) -> None:
    assert recordio.padding(length) == bytes(pad)


@pytest.mark.parametrize("size", range(10))
def test_small_payloads_are_one_complete_record(size: int) -> None:
    payload = bytes(range(1, size + 1))
    encoded = recordio.encode(payload)
    assert decode(encoded) == [(0, payload)]
    assert len(encoded) == recordio.framed_size(size) == 8 + (size + 3) // 4 * 4


def test_magic_inside_the_payload_is_not_escaped() -> None:
    payload = struct.pack("<I", recordio.MAGIC) * 3
    assert recordio.encode(payload) == recordio.header(12) + payload


def test_parts_of_an_oversized_payload() -> None:
    assert recordio.parts(10, max_length=4) == [(Flag.BEGIN, 4), (Flag.MIDDLE, 4), (Flag.END, 2)]
    assert recordio.parts(8, max_length=4) == [(Flag.BEGIN, 4), (Flag.END, 4)]
    assert recordio.parts(4, max_length=4) == [(Flag.COMPLETE, 4)]
    assert recordio.SPLIT_PART % 4 == 0
    assert recordio.SPLIT_PART <= recordio.MAX_LENGTH
    assert recordio.parts(recordio.MAX_LENGTH) == [(Flag.COMPLETE, recordio.MAX_LENGTH)]
    assert recordio.parts(recordio.MAX_LENGTH + 1) == [
        (Flag.BEGIN, recordio.SPLIT_PART),
        (Flag.END, recordio.MAX_LENGTH + 1 - recordio.SPLIT_PART),
    ]
    assert recordio.parts(7, max_length=5) == [(Flag.BEGIN, 4), (Flag.END, 3)]


@pytest.mark.parametrize("max_length", [1, 3, 4, 5, 7])
def test_oversized_payloads_split_and_concatenate_back(max_length: int) -> None:
    payload = bytes(range(23))
    encoded = recordio.encode(payload, max_length)
    records = decode(encoded)
    assert [flag for flag, _ in records] == [1] + [2] * (len(records) - 2) + [3]
    assert all(len(part) <= max_length for _, part in records)
    assert join_multipart(records) == [payload]
    assert len(encoded) == recordio.framed_size(len(payload), max_length)


@given(
    payload=st.binary(max_size=64),
    cuts=st.lists(st.integers(min_value=0, max_value=64), max_size=6),
    max_length=st.integers(min_value=1, max_value=20),
)
def test_framer_fed_in_any_chunks_equals_encode(
    payload: bytes, cuts: list[int], max_length: int
) -> None:
    bounds = sorted({0, len(payload), *(c for c in cuts if c <= len(payload))})
    framer = RecordFramer(len(payload), max_length)
    pieces = [framer.begin()]
    for start, end in itertools.pairwise(bounds):
        pieces.extend(bytes(p) for p in framer.feed(payload[start:end]))
    pieces.append(framer.end())
    assert b"".join(pieces) == recordio.encode(payload, max_length)


def test_framer_refuses_more_bytes_than_announced() -> None:
    framer = RecordFramer(3)
    framer.begin()
    with pytest.raises(RecordLengthError):
        list(framer.feed(b"abcd"))


def test_framer_refuses_fewer_bytes_than_announced() -> None:
    framer = RecordFramer(3, max_length=2)
    framer.begin()
    list(framer.feed(b"ab"))
    with pytest.raises(RecordLengthError):
        framer.end()
