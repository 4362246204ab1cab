"""One container's output: to the host's log file, then in batches to the consumers.

Two threads per host, so the container is never held back by what is done with its lines:

- the reader only reads the engine's frames and appends them to the log file (one ``write``
  per frame, no flush: the file is the buffer), noting which stream each byte range came from
  and when it was read;
- the consumer reads the file behind it, cuts lines (lines.py), and hands them in batches
  (``Lines``, at most ``BATCH_BYTES`` of output) to each consumer: the metrics and the store,
  the user's sink. However slow a consumer is, the reader keeps going and memory stays
  bounded: the backlog is on disk, not in memory.

Consumers are guarded one by one: one that raises (a closed pipe after ``emulator run |
head``, a locked database) loses that batch, or only the lines it reports with ``LinesLost``,
is still offered the next ones, and stops neither the log file nor the other consumers. What
went wrong is kept in ``errors`` (the first failure of each consumer, then a count of lines).
A stream that breaks (the engine went away: the job fails anyway) is one more error. What
could not be kept at all (output the log file could not take, a reader given up on, lines not
offered after ``abandon``) is in ``lost``: the job reports it in its record.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from emulator.observe.lines import LineSplitter, decode_lines

BATCH_BYTES = 1024 * 1024  # output handed to the consumers at once, at most
SEGMENT_SECONDS = 0.1  # a byte range of one stream gets one timestamp at most this long
POLL_SECONDS = 0.2  # waits are sliced so that Ctrl-C reaches the main thread
# Once output is there, the consumer lets more gather this long before it takes a batch: a
# few dozen batches a second at most (each costs a transaction, a flush), lines shown late
# by no more than this.
GATHER_SECONDS = 0.05


class Output(Protocol):
    """A container's output frames, (stream, chunk) with 1 = stdout and 2 = stderr."""

    def __iter__(self) -> Iterator[tuple[int, bytes]]: ...

    def close(self) -> None:
        """End the stream, waking a reader blocked on it."""


@dataclass(frozen=True)
class Lines:
    """Consecutive lines of one stream, read at about the same time."""

    stream: int
    timestamp: float  # seconds since the epoch: when the reader got their last bytes
    lines: list[str]
    end: int = -1  # the log file's offset where the bytes read at ``timestamp`` end


BatchConsumer = Callable[[Sequence[Lines]], None]


class LinesLost(Exception):
    """Raised by a consumer that went through a batch but failed on some of its lines."""

    def __init__(self, first: BaseException, count: int) -> None:
        super().__init__(str(first))
        self.first = first
        self.count = count


class LogPump:
    """Reads one container's output until it ends; see the module doc.

    ``start`` opens the log file (appending) before it returns. ``finish`` waits for the
    reader to reach the end of the output, then for the consumers to get every line.
    """

    def __init__(
        self,
        output: Output,
        log_file: Path,
        consumers: Mapping[str, BatchConsumer],
        host: str = "",
    ) -> None:
        self._output = output
        self._log_file = log_file
        self._consumers = dict(consumers)
        self.host = host or log_file.stem
        self.error: BaseException | None = None  # what broke the stream, if it broke
        self._failures: dict[str, tuple[BaseException, int]] = {}  # consumer -> first, count
        self._lost: list[str] = []
        self._changed = threading.Condition()
        # (stream, end offset, time read) of the byte ranges not yet consumed, in file order
        self._segments: deque[tuple[int, int, float]] = deque()
        self._segment_started = 0.0
        self._reader_done = False
        self._abandoned = False
        self._closed = False  # the stream was closed here (given up on, abandoned)
        self._idle = False  # the consumer waits for output: the reader wakes it
        self._progress = time.monotonic()  # last time the reader got something
        self._reader = threading.Thread(target=self._read, name=f"log-reader-{self.host}")
        self._consumer = threading.Thread(target=self._consume, name=f"log-lines-{self.host}")
        self._reader.daemon = self._consumer.daemon = True
        self._write_error: OSError | None = None
        self._write_fd = -1
        self._read_fd = -1
        self._start = 0  # where the log file ended when the pump started
        self._offset = 0  # where the consumer is in the log file
        self._delivered = 0  # up to where the consumers have had every line
        self._stamps: dict[int, float] = {}  # stream -> when its last consumed bytes came

    # -- the caller's side ---------------------------------------------------------------------

    @property
    def errors(self) -> list[str]:
        """What went wrong, one message per failing part (empty when all went well)."""
        found = [
            f"{name} failed on {count} line(s), first with {type(exc).__name__}: {exc}"
            for name, (exc, count) in self._failures.items()
        ]
        if self.error is not None:
            error = f"{type(self.error).__name__}: {self.error}"
            found.append(f"the log stream ended early ({error}): what followed is missing")
        return found + self.lost

    @property
    def lost(self) -> list[str]:
        """What of the output could not be kept (empty when every byte reached the log file
        and every line the consumers)."""
        with self._changed:
            return list(self._lost)

    @property
    def consumed(self) -> bool:
        """Whether the consumer thread is done (or never started)."""
        return not self._consumer.is_alive()

    def start(self) -> None:
        self._write_fd = os.open(self._log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        self._read_fd = os.open(self._log_file, os.O_RDONLY)
        self._start = os.fstat(self._write_fd).st_size  # an existing file is appended to
        self._offset = self._delivered = self._start
        self._reader.start()
        self._consumer.start()

    def finish(self, stall_seconds: float) -> None:
        """Wait until the reader has reached the end of the output and the consumers have
        every line. A reader that gets nothing at all for ``stall_seconds`` (counted from
        this call) is given up on: its stream is closed and ``lost`` says so."""
        self.finish_reading(stall_seconds)
        self._join(self._consumer)

    def finish_reading(self, stall_seconds: float) -> None:
        """The first half of ``finish``: the output read to its end (or given up on)."""
        called = time.monotonic()
        while self._reader.is_alive():
            self._reader.join(POLL_SECONDS)
            if not self._reader.is_alive():
                break
            with self._changed:
                quiet = time.monotonic() - max(self._progress, called)
            if quiet > stall_seconds:
                self._note_lost(
                    f"the output of {self.host} was cut short: nothing came for "
                    f"{quiet:.0f} s after the container ended, so the reader was given up on"
                )
                self._close_output()
                self._reader.join(stall_seconds)
                break

    def abandon(self) -> None:
        """End now: stop reading (the output is closed) and offer the consumers nothing more
        (one in the middle of a batch finishes it in the background); ``lost`` says from
        where on they got nothing. For the cleanup after an interrupt or an error."""
        with self._changed:
            if self._abandoned:
                return
            self._abandoned = True
            if self._reader.is_alive():
                self._lost.append(
                    f"the reading of the output of {self.host} was interrupted: its log file "
                    "may miss the end"
                )
            if self._reader.is_alive() or self._segments or self._delivered < self._offset:
                self._lost.append(
                    f"the output of {self.host} from byte {self._delivered} of its log file "
                    "on may not have reached the metrics and the log output (interrupted)"
                )
            self._changed.notify_all()
        self._close_output()
        for thread, seconds in ((self._reader, 10.0), (self._consumer, 1.0)):
            if thread.ident is not None:
                thread.join(seconds)

    def _close_output(self) -> None:
        with self._changed:
            self._closed = True
        self._output.close()

    def _join(self, thread: threading.Thread) -> None:
        while thread.ident is not None and thread.is_alive():
            thread.join(POLL_SECONDS)

    def _note_lost(self, message: str) -> None:
        with self._changed:
            self._lost.append(message)

    # -- the reader thread ---------------------------------------------------------------------

    def _read(self) -> None:
        written = self._start
        dropped = 0
        try:
            for stream, chunk in self._output:
                kept = self._append(chunk) if dropped == 0 else 0
                dropped += len(chunk) - kept
                written += kept
                now = time.time()
                with self._changed:
                    self._progress = time.monotonic()
                    if kept:
                        self._note_segment(stream, written, now)
                    if self._idle:
                        self._changed.notify()
        except Exception as exc:  # a broken stream must not kill the job, only end its logs
            with self._changed:
                if not self._closed:  # closed here: already said in ``lost``
                    self.error = exc
        finally:
            self._output.close()
            os.close(self._write_fd)
            with self._changed:
                if dropped:
                    self._lost.append(
                        f"{dropped} byte(s) of the output of {self.host} could not be written "
                        f"to {self._log_file} ({self._write_error}): they are not in the log "
                        "file, the metrics nor the log output"
                    )
                self._reader_done = True
                self._changed.notify_all()

    def _append(self, chunk: bytes) -> int:
        """Write ``chunk`` to the log file; how many bytes went in (all, unless it failed:
        then nothing more is written, so the file has no hole)."""
        view = memoryview(chunk)
        done = 0
        try:
            while done < len(chunk):
                done += os.write(self._write_fd, view[done:])
        except OSError as exc:  # a full disk: the rest of the output is counted as lost
            self._write_error = exc
        return done

    def _note_segment(self, stream: int, end: int, now: float) -> None:
        """Extend the last byte range when it is of the same stream and recent enough."""
        if (
            self._segments
            and self._segments[-1][0] == stream
            and now - self._segment_started < SEGMENT_SECONDS
        ):
            self._segments[-1] = (stream, end, now)
        else:
            self._segments.append((stream, end, now))
            self._segment_started = now

    # -- the consumer thread -------------------------------------------------------------------

    def _consume(self) -> None:
        splitters = {1: LineSplitter(), 2: LineSplitter()}
        try:
            while (taken := self._next_ranges()) is not None:
                start, ranges = taken
                self._deliver(self._cut_lines(start, ranges, splitters))
                with self._changed:
                    self._delivered = ranges[-1][1]
            with self._changed:
                abandoned = self._abandoned
            if not abandoned:
                last = [
                    Lines(
                        stream,
                        self._stamps.get(stream, 0.0),
                        decode_lines(splitter.end()),
                        self._offset,
                    )
                    for stream, splitter in splitters.items()
                ]
                self._deliver([group for group in last if group.lines])
        except Exception as exc:  # the file read back (a bug of ours): say what is missing
            self._note_lost(
                f"the lines of {self.host} could not be read back from {self._log_file} "
                f"({type(exc).__name__}: {exc}): the metrics and the log output miss them"
            )
        finally:
            os.close(self._read_fd)

    def _next_ranges(self) -> tuple[int, list[tuple[int, int, float]]] | None:
        """Where the next batch starts and its byte ranges (stream, end, time), waiting for
        the reader; None once everything is consumed (or abandoned)."""
        with self._changed:
            while not self._segments and not self._reader_done and not self._abandoned:
                self._idle = True
                self._changed.wait()
                self._idle = False
            if (
                self._segments
                and self._segments[-1][1] - self._offset < BATCH_BYTES
                and not self._reader_done
                and not self._abandoned
            ):
                self._changed.wait(GATHER_SECONDS)  # woken early only by the end
            if self._abandoned or not self._segments:
                return None
            limit = self._offset + BATCH_BYTES
            ranges = []
            while self._segments and self._segments[0][1] <= limit:
                ranges.append(self._segments.popleft())
            if not ranges:  # a long range: the batch takes its first BATCH_BYTES
                stream, _, stamp = self._segments[0]
                ranges.append((stream, limit, stamp))
            start, self._offset = self._offset, ranges[-1][1]
            return start, ranges

    def _cut_lines(
        self,
        start: int,
        ranges: list[tuple[int, int, float]],
        splitters: dict[int, LineSplitter],
    ) -> list[Lines]:
        data = _read_range(self._read_fd, start, ranges[-1][1] - start)
        batch = []
        position = 0
        for stream, stop, stamp in ranges:
            size = stop - start - position
            splitter = splitters.setdefault(stream, LineSplitter())
            raw = splitter.feed(data[position : position + size])
            position += size
            self._stamps[stream] = stamp
            if raw:
                batch.append(Lines(stream, stamp, decode_lines(raw), stop))
        return batch

    def _deliver(self, batch: list[Lines]) -> None:
        if not batch:
            return
        for name, consume in self._consumers.items():
            try:
                consume(batch)
            except LinesLost as lost:
                self._fail(name, lost.first, lost.count)
            except Exception as exc:  # reported after the join (module doc)
                self._fail(name, exc, sum(len(group.lines) for group in batch))

    def _fail(self, name: str, exc: BaseException, count: int) -> None:
        first, before = self._failures.get(name, (exc, 0))
        self._failures[name] = (first, before + count)


def _read_range(fd: int, offset: int, size: int) -> bytes:
    """``size`` bytes of the log file from ``offset`` (all written before they were noted)."""
    parts = []
    while size > 0:
        part = os.pread(fd, size, offset)
        if not part:
            raise OSError(f"the log file is shorter than what was written to it ({offset})")
        parts.append(part)
        offset += len(part)
        size -= len(part)
    return b"".join(parts)
