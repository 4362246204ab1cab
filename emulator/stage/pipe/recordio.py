"""RecordIO framing as SageMaker Pipe mode writes it (the MXNet/dmlc RecordIO layout).

One record on the wire::

    uint32 LE  magic 0xCED7230A
    uint32 LE  low 29 bits: payload length; top 3 bits: continuation flag
    payload
    zero padding up to a multiple of 4 bytes

Each object (or augmented-manifest attribute) becomes one record with flag 0 (COMPLETE). The
payload is never escaped (SageMaker's ``write_recordio`` does not escape either).

Payloads longer than the 29-bit length field (2**29 - 1 bytes) are split into parts flagged
BEGIN (1), MIDDLE (2)..., END (3), each part framed and padded like a record, whose payloads
concatenate to the object: that is how SageMaker's own readers decode multipart records
(ml-io's instance readers, PipeModeDataset's RecordIOReader). Parts are ``SPLIT_PART`` bytes
(a multiple of 4, so only the last part carries padding). Note dmlc's C++ RecordIOReader gives
the same flags another meaning (it re-inserts the magic between parts), so a dmlc reader would
misread such an object; objects under 512 MiB never use parts.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterator
from enum import IntEnum

MAGIC = 0xCED7230A
HEADER_SIZE = 8
MAX_LENGTH = (1 << 29) - 1
SPLIT_PART = MAX_LENGTH & ~3  # 4-aligned, so parts before the last need no padding
ALIGNMENT = 4

_HEADER = struct.Struct("<II")
_ZEROS = bytes(ALIGNMENT)


class Flag(IntEnum):
    """The continuation flag in the top 3 bits of the length word."""

    COMPLETE = 0
    BEGIN = 1
    MIDDLE = 2
    END = 3


class RecordLengthError(ValueError):
    """The payload fed to a framer is longer or shorter than the length it announced."""


def header(length: int, flag: Flag = Flag.COMPLETE) -> bytes:
    """The 8-byte header of a record (or part) carrying ``length`` payload bytes."""
    if not 0 <= length <= MAX_LENGTH:
        raise ValueError(f"a RecordIO record holds 0..{MAX_LENGTH} bytes, not {length}")
    return _HEADER.pack(MAGIC, (int(flag) << 29) | length)


def pack_header_into(buffer: bytearray, offset: int, length: int) -> None:
    """Write the header of a COMPLETE record of ``length`` bytes at ``offset`` (no bytes
    object: the Pipe feeder frames small files in its write buffer)."""
    if not 0 <= length <= MAX_LENGTH:
        raise ValueError(f"a RecordIO record holds 0..{MAX_LENGTH} bytes, not {length}")
    _HEADER.pack_into(buffer, offset, MAGIC, length)


def padding(length: int) -> bytes:
    """The zero bytes that follow a payload of ``length`` bytes."""
    return _ZEROS[: -length % ALIGNMENT]


def parts(length: int, max_length: int = MAX_LENGTH) -> list[tuple[Flag, int]]:
    """How a payload of ``length`` bytes is framed: ``(flag, part_length)`` per record.

    One COMPLETE record up to ``max_length`` bytes (a parameter for tests only), else parts of
    ``max_length`` rounded down to a multiple of 4 (SPLIT_PART for the real limit).
    """
    if not 0 < max_length <= MAX_LENGTH:
        raise ValueError(f"max_length must be 1..{MAX_LENGTH}, not {max_length}")
    if length <= max_length:
        return [(Flag.COMPLETE, length)]
    part_size = max_length - max_length % ALIGNMENT or max_length
    count = -(-length // part_size)
    sizes = [part_size] * (count - 1) + [length - part_size * (count - 1)]
    flags = [Flag.BEGIN] + [Flag.MIDDLE] * (count - 2) + [Flag.END]
    return list(zip(flags, sizes, strict=True))


def framed_size(length: int, max_length: int = MAX_LENGTH) -> int:
    """Bytes on the wire for a payload of ``length`` bytes, headers and padding included."""
    return sum(HEADER_SIZE + size + len(padding(size)) for _, size in parts(length, max_length))


class RecordFramer:
    """Frames one payload of known length, fed in chunks of any size, without copying it.

    Write ``begin()``, then every piece yielded by ``feed(chunk)`` for each chunk, then ``end()``.
    Raises RecordLengthError when the chunks do not add up to the announced length.
    """

    def __init__(self, length: int, max_length: int = MAX_LENGTH) -> None:
        self._parts = deque(parts(length, max_length))
        self._left = 0  # payload bytes still due in the current part
        self._pad = b""  # padding owed by the current part once it is full

    def begin(self) -> bytes:
        return self._next_part()

    def feed(self, chunk: bytes | bytearray) -> Iterator[bytes | bytearray | memoryview]:
        if len(chunk) <= self._left:  # the common case: no part boundary inside the chunk
            self._left -= len(chunk)
            yield chunk
            return
        view = memoryview(chunk)
        while view:
            if not self._left:
                if not self._parts:
                    raise RecordLengthError("more payload bytes than the record length")
                yield self._pad + self._next_part()
            take = min(len(view), self._left)
            yield view[:take]
            view = view[take:]
            self._left -= take

    def end(self) -> bytes:
        if self._left or self._parts:
            raise RecordLengthError("fewer payload bytes than the record length")
        return self._pad

    def _next_part(self) -> bytes:
        flag, size = self._parts.popleft()
        self._left = size
        self._pad = padding(size)
        return header(size, flag)


def encode(payload: bytes, max_length: int = MAX_LENGTH) -> bytes:
    """The whole framing of an in-memory payload (for small values and tests)."""
    framer = RecordFramer(len(payload), max_length)
    return b"".join([framer.begin(), *framer.feed(payload), framer.end()])
