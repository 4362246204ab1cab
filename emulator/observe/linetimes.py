"""When each line of a host's log file was read: a small index beside the log file.

The log file keeps the output's bytes only, and CloudWatch events need a time per line. The
``TimesWriter`` is one more consumer of the host's batches: per batch, one ``write`` of a few
fixed-size records to ``<host>.times`` (no per-line work, no file per line). Little-endian::

    header   b"EMTIMES1", created (int64 ms)     16 bytes: when following the host began
    record   end (int64), time (int64 ms)        16 bytes per byte range the reader timed

A line of the log file (split on ``\\n``, as ``emulator.api.logs`` does) that ends at offset
``e`` (just after its ``\\n``) was read at the time of the first record whose end is ``e`` or
more. Ends strictly increase and times never decrease, so both can be binary-searched, and a
line's time never changes once it has one. Lines past the last record are not timed yet:
``TimedLog`` shows them only once the stream has ended (they then get the last time).
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from emulator.observe.logs import Lines

MAGIC = b"EMTIMES1"
HEADER = struct.Struct("<8sq")
RECORD = struct.Struct("<qq")
FIRST_READ = 16 * 1024  # a log read starts this small (one line is often all that is needed)
MAX_READ = 256 * 1024  # ... and doubles up to this while the lines go on


def to_ms(seconds: float) -> int:
    return int(seconds * 1000)


class TimesWriter:
    """A LogPump consumer writing the times of one host's batches (module doc).

    The header is written when it is made: the stream exists from when following began. It
    never raises: a file it cannot write makes each batch fail (the pump reports it once)."""

    def __init__(self, path: Path, created: float | None = None) -> None:
        self.path = path
        self._error: OSError | None = None
        self._end = 0
        self._ms = self.created_ms = to_ms(time.time() if created is None else created)
        try:
            self._open()
        except OSError as exc:
            self._error = exc

    def _open(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            header = os.pread(fd, HEADER.size, 0) if size >= HEADER.size else b""
            if not header or HEADER.unpack(header)[0] != MAGIC:  # new (or not ours): restart
                os.ftruncate(fd, 0)
                os.pwrite(fd, HEADER.pack(MAGIC, self.created_ms), 0)
                return
            self.created_ms = self._ms = HEADER.unpack(header)[1]
            whole = size - (size - HEADER.size) % RECORD.size
            if whole != size:  # a record cut short (a crash mid-write): drop it
                os.ftruncate(fd, whole)
            if whole > HEADER.size:  # following again (a pump appending): go on from there
                self._end, self._ms = RECORD.unpack(os.pread(fd, RECORD.size, whole - 16))
        finally:
            os.close(fd)

    def __call__(self, batch: Sequence[Lines]) -> None:
        if self._error is not None:
            raise self._error
        records: list[tuple[int, int]] = []
        for group in batch:
            if group.end <= self._end:  # already timed (or no offset known)
                continue
            moment = max(to_ms(group.timestamp), self._ms)  # never back in time
            if records and records[-1][1] == moment:  # the later end covers both
                records[-1] = (group.end, moment)
            else:
                records.append((group.end, moment))
            self._end, self._ms = group.end, moment
        if records:
            data = b"".join(RECORD.pack(end, moment) for end, moment in records)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)


class LineTimes:
    """The index of one log file, read (a snapshot: records added later are not seen)."""

    def __init__(self, created_ms: int, data: bytes | mmap.mmap = b"") -> None:
        self.created_ms = created_ms
        self._data = data
        self.count = max(0, (len(data) - HEADER.size) // RECORD.size)
        self._cached = (0, -1, created_ms)  # (after, up to, ms): the last record looked up

    @classmethod
    def read(cls, path: Path) -> LineTimes | None:
        """The index at ``path``; None when there is none (a job of an earlier version)."""
        try:
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size < HEADER.size:
                    return None
                data: bytes | mmap.mmap
                if size <= 64 * 1024:
                    data = file.read(size)
                else:  # a long job's index: only the records looked at are read
                    data = mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ)
        except OSError:
            return None
        magic, created = HEADER.unpack_from(data, 0)
        return cls(created, data) if magic == MAGIC else None

    def close(self) -> None:
        if isinstance(self._data, mmap.mmap):
            self._data.close()

    def record(self, index: int) -> tuple[int, int]:
        end, moment = RECORD.unpack_from(self._data, HEADER.size + index * RECORD.size)
        return end, moment

    @property
    def timed_end(self) -> int:
        """Where the timed bytes end (0 when none are)."""
        return self.record(self.count - 1)[0] if self.count else 0

    @property
    def last_ms(self) -> int:
        return self.record(self.count - 1)[1] if self.count else self.created_ms

    def time_at(self, end: int) -> int:
        """The time (ms) of the line ending at ``end``: that of the first record reaching it."""
        after, up_to, moment = self._cached
        if after < end <= up_to:
            return moment
        index = self._first(lambda record: record[0] >= end)
        if index == self.count:
            return self.last_ms
        self._cached = (self.record(index - 1)[0] if index else -1, *self.record(index))
        return self._cached[2]

    def end_before(self, moment: int) -> int | None:
        """An offset ``b``: the lines ending at ``b`` or before were read before ``moment``,
        the others at ``moment`` or later. None: every line was read before ``moment``."""
        index = self._first(lambda record: record[1] >= moment)
        if index == self.count:
            return None if self.last_ms < moment else self.timed_end
        return self.record(index - 1)[0] if index else 0

    def _first(self, reached: Callable[[tuple[int, int]], bool]) -> int:
        """The first record for which ``reached`` holds (it holds for every later one)."""
        low, high = 0, self.count
        while low < high:
            middle = (low + high) // 2
            if reached(self.record(middle)):
                high = middle
            else:
                low = middle + 1
        return low


class Event(NamedTuple):
    """One line of the log file: bytes [start, end) hold it and its ``\\n``."""

    start: int
    end: int
    timestamp: int  # ms
    raw: bytes

    @property
    def message(self) -> str:
        return self.raw.decode("utf-8", errors="replace")


class TimedLog:
    """A log file's lines with their times, read by byte offset (never the whole file).

    Only ``visible`` bytes hold events: those timed by the index, cut after their last
    ``\\n``, or, once the stream has ``ended``, the whole file (a last line without a
    ``\\n`` included)."""

    def __init__(self, path: Path, times: LineTimes, ended: bool) -> None:
        self.times = times
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        if ended or times.timed_end >= self.size:
            self.visible = self.size if ended else self._line_start(self.size)
        else:
            self.visible = self._line_start(times.timed_end)

    def close(self) -> None:
        os.close(self._fd)
        self.times.close()

    def __enter__(self) -> TimedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_boundary(self, offset: int) -> bool:
        """Whether a line starts (or the file ends) at ``offset``."""
        if offset in (0, self.size):
            return True
        return 0 < offset < self.size and os.pread(self._fd, 1, offset - 1) == b"\n"

    def first_from(self, moment: int | None) -> int:
        """Where the first event read at ``moment`` or later starts (``visible`` if none)."""
        if moment is None:
            return 0
        bound = self.times.end_before(moment)
        return self.visible if bound is None else min(self._line_start(bound), self.visible)

    def stop_before(self, moment: int | None) -> int:
        """Where the last event read before ``moment`` ends (0 if none)."""
        bound = None if moment is None else self.times.end_before(moment)
        return self.visible if bound is None or bound >= self.visible else self._line_start(bound)

    def forward(self, start: int, stop: int) -> Iterator[Event]:
        """The events in [start, stop) (both line boundaries), first to last."""
        begin = start  # where the line being read starts
        position = start
        pieces: list[bytes] = []  # of that line, read so far
        size = FIRST_READ
        while position < stop:
            chunk = os.pread(self._fd, min(size, stop - position), position)
            if not chunk:
                break
            position += len(chunk)
            size = min(size * 2, MAX_READ)
            if b"\n" not in chunk:
                pieces.append(chunk)
                continue
            lines = chunk.split(b"\n")
            if pieces:
                lines[0] = b"".join([*pieces, lines[0]])
                pieces = []
            for raw in lines[:-1]:
                end = begin + len(raw) + 1
                yield Event(begin, end, self.times.time_at(end), raw)
                begin = end
            if lines[-1]:
                pieces.append(lines[-1])
        if pieces:  # the last line of an ended stream, without a newline
            yield Event(begin, position, self.times.time_at(position), b"".join(pieces))

    def backward(self, stop: int, floor: int) -> Iterator[Event]:
        """The events in [floor, stop) (both line boundaries), last to first."""
        buffer = b""  # the bytes [position, position + len(buffer)) read so far
        position = stop
        high = 0  # buffer[:high] is not yielded yet
        size = FIRST_READ
        while True:
            # the line ending at buffer[high - 1] starts after the \n before that byte
            cut = buffer.rfind(b"\n", 0, max(high - 1, 0))
            if cut >= 0 or (position == floor and high > 0):
                start = cut + 1
                text = high - 1 if buffer[high - 1 : high] == b"\n" else high
                end = position + high
                yield Event(position + start, end, self.times.time_at(end), buffer[start:text])
                high = start
                continue
            if position == floor:
                return
            read = min(size, position - floor)
            size = min(size * 2, MAX_READ)
            position -= read
            buffer = os.pread(self._fd, read, position) + buffer[:high]
            high = len(buffer)

    def _line_start(self, offset: int) -> int:
        """Where the line holding the byte at ``offset`` starts (just after a ``\\n``)."""
        position = offset
        size = FIRST_READ
        while position > 0:
            read = min(size, position)
            size = min(size * 2, MAX_READ)
            found = os.pread(self._fd, read, position - read).rfind(b"\n")
            if found >= 0:
                return position - read + found + 1
            position -= read
        return 0
