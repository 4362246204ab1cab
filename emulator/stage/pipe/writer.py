"""Writing one FIFO with as little work per byte as the feeder can do.

The feeder (host Python) shares the CPUs with the reader in the container, so every byte it
does not touch is time the reader gets:

- Regular files from SPLICE_MIN bytes up are spliced (splice(2)): page-cache pages go into the
  pipe by reference, never through this process. A step is SPLICE_STEP bytes, the usual
  pipe-max-size: fewer calls and wake-ups per byte (benchmarks/pipe_throughput.py, 8 x 256
  MiB: 0.78-0.82x of File mode with 256 KiB steps, 0.83-0.89x with 1 MiB, on kernel 6.18).
  Where the kernel refuses splice (EINVAL on some file systems) the same bytes go with preadv
  into the writer's buffer and write.
- Smaller pieces (RecordIO headers and padding, small objects, inline values) are gathered in
  one preallocated buffer and written FLUSH_AT bytes at a time: a write per 4 KiB object would
  cost more than the object (each write wakes the reader). Small files are read straight into
  that buffer with preadv, their RecordIO header packed in front and padding after: no bytes
  object, no copy, no fstat (a file that does not hold its listed size is left to the caller).
- Files from HELPER_MIN bytes up are spliced by a helper process (emulator.stage.pipe.splicer),
  when the channel gives one: a thread that needs the GIL back after every splice leaves the
  reader idle whenever another thread holds it.
- The pipe buffer is raised to /proc/sys/fs/pipe-max-size (at most PIPE_MAX): fewer wake-ups.

Writes and splices block while the pipe is full: the kernel wakes the writer when the reader
has emptied it, and the writer refills it at once, without a return to Python between (a
non-blocking write, then poll(), then the next write loses that race: the reader finds the pipe
empty and sleeps, once per pipe-full). The stop flag is checked before every write and splice;
PipeChannel.stop() reads the FIFO itself to get a blocked writer through to that check.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import threading
import time
from collections.abc import Iterator, Sequence

from emulator.stage.pipe.recordio import ALIGNMENT, HEADER_SIZE, pack_header_into
from emulator.stage.pipe.splicer import IN_FLIGHT, REQUEST, LazySplicer, Splicer, SplicerGone

SPLICE_MIN = 128 * 1024  # local files at least this big are spliced into the FIFO
SPLICE_STEP = 1024 * 1024  # bytes per splice call (see the module docstring)
HELPER_MIN = 8 * 1024 * 1024  # local files at least this big go to the splice helper
FLUSH_AT = 256 * 1024  # the buffer of small pieces is written once it holds this much
DIRECT_MIN = 64 * 1024  # pieces at least this big are written as they are, not buffered
PIPE_MAX = 8 * 1024 * 1024  # the pipe buffer asked for, if the system allows that much
PIPE_MAX_SIZE_FILE = "/proc/sys/fs/pipe-max-size"
CHUNK = 1024 * 1024  # bytes per read when draining a FIFO
# Room for FLUSH_AT bytes plus the largest piece added before a flush (a small file framed).
_CAPACITY = FLUSH_AT + SPLICE_MIN + HEADER_SIZE + ALIGNMENT
_ZEROS = bytes(ALIGNMENT)
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO never blocks
_SPLICE_REFUSED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


class Stopped(Exception):
    """stop() was called: unwind the feeder thread."""


class ReaderClosed(Exception):
    """The reader closed the FIFO before the end of the epoch."""


class Counters:
    """What a channel's feeder has done (updated by its thread only)."""

    def __init__(self) -> None:
        self.completed = 0
        self.closed_early = 0
        self.bytes_written = 0


class FifoWriter:
    """Blocking writes to one FIFO (one epoch); raises Stopped once ``stop`` is set,
    ReaderClosed when the reader closed its end. Call flush() at the end: pieces may wait in
    the buffer."""

    def __init__(
        self,
        fd: int,
        stop: threading.Event,
        counters: Counters,
        splicer: LazySplicer | None = None,
    ) -> None:
        os.set_blocking(fd, True)
        grow_pipe(fd)
        self._fd = fd
        self._stop = stop
        self._counters = counters
        self._buffer = bytearray(_CAPACITY)
        self._view = memoryview(self._buffer)
        self._used = 0  # bytes of the buffer waiting to be written
        self._splice = hasattr(os, "splice")  # False once the kernel refused it
        self._splicer = splicer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        size = len(data)
        if size >= DIRECT_MIN:  # big pieces go out directly, uncopied
            self.flush()
            self._write_all(data)
            return
        used = self._used
        self._view[used : used + size] = data
        self._used = used + size
        if self._used >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self._used:
            used, self._used = self._used, 0
            self._write_all(self._view[:used])

    def add_small_files(
        self, indices: Iterator[int], paths: Sequence[str], sizes: Sequence[int], framed: bool
    ) -> int | None:
        """Add the files ``paths[i]`` for ``i`` in ``indices`` while each is smaller than
        SPLICE_MIN and holds its listed ``sizes[i]`` bytes (``framed``: one RecordIO record
        each); return the first index not added (too big, changed, not readable so: the
        caller looks closer, then may call again with the rest of ``indices``), None at the
        end. The loop of a channel of small local files: one open, preadv and close per file,
        straight into the buffer, with as little Python around them as can be."""
        buffer, view, preadv, open_, close = self._buffer, self._view, os.preadv, os.open, os.close
        header = HEADER_SIZE if framed else 0
        for index in indices:
            size = sizes[index]
            if size >= SPLICE_MIN:
                return index
            try:
                fd = open_(paths[index], OPEN_FLAGS)
            except OSError:
                return index
            used = self._used
            start = used + header
            end = start + size
            try:  # one byte more than listed: a file that grew is seen too
                got = preadv(fd, (view[start : end + 1],), 0)
            except OSError:  # not a regular file...
                got = -1
            finally:
                close(fd)
            if got != size:
                return index
            if framed:
                pack_header_into(buffer, used, size)
                if pad := -size % ALIGNMENT:
                    view[end : end + pad] = _ZEROS[:pad]
                    end += pad
            self._used = end
            if end >= FLUSH_AT:
                self.flush()
        return None

    def send_file(self, fd: int, offset: int, count: int) -> int:
        """Send ``count`` bytes of the regular file ``fd`` from ``offset``; return how many were
        sent (fewer only when the file ends sooner). Spliced from SPLICE_MIN bytes up, else
        read into the buffer like any small piece."""
        if count < SPLICE_MIN:
            return self._append_file(fd, offset, count)
        self.flush()
        sent = 0
        if count >= HELPER_MIN and self._splice and self._splicer is not None:
            helper = self._splicer.get()
            if helper is not None:
                sent = self._send_by_helper(helper, fd, offset, count)
                if sent == count or self._splice:  # all sent, or the file ended sooner
                    return sent
        while sent < count:
            if self._stop.is_set():
                raise Stopped
            want = min(SPLICE_STEP, count - sent)
            try:
                moved = self._move(fd, offset + sent, want)
            except BrokenPipeError as exc:
                raise ReaderClosed from exc
            if not moved:
                break
            sent += moved
        return sent

    def _send_by_helper(self, helper: Splicer, fd: int, offset: int, count: int) -> int:
        """Splice by the helper, IN_FLIGHT requests queued; return the bytes sent. Clears
        ``_splice`` when the kernel refuses splice before the first byte (the caller goes on
        without it)."""
        queued = sent = error = 0
        short = False  # a request moved less than asked: the rest must move nothing
        try:
            while True:
                while helper.busy < IN_FLIGHT and queued < count and not (short or error):
                    if self._stop.is_set():
                        raise Stopped
                    want = min(REQUEST, count - queued)
                    helper.submit(fd, self._fd, offset + queued, want)
                    queued += want
                if not helper.busy:
                    break
                asked, moved, failed = helper.collect()
                if moved and (short or error):
                    raise OSError(errno.EIO, "the splice helper moved bytes out of order")
                sent += moved
                self._counters.bytes_written += moved
                short = short or moved < asked
                error = error or failed
        finally:
            with contextlib.suppress(SplicerGone):
                while helper.busy:  # stop() drains the FIFO, so these complete
                    helper.collect()
        if error == errno.EPIPE:
            raise ReaderClosed
        if error in _SPLICE_REFUSED and not sent:
            self._splice = False
        elif error:
            raise OSError(error, os.strerror(error))
        return sent

    def _append_file(self, fd: int, offset: int, count: int) -> int:
        used = self._used
        got = os.preadv(fd, (self._view[used : used + count],), offset) if count else 0
        self._used = used + got
        if self._used >= FLUSH_AT:
            self.flush()
        return got

    def _move(self, fd: int, offset: int, count: int) -> int:
        """Splice; where refused, preadv into the (flushed, so free) buffer and write."""
        if self._splice:
            try:
                moved = os.splice(fd, self._fd, count, offset_src=offset)
            except OSError as exc:
                if exc.errno not in _SPLICE_REFUSED:
                    raise
                self._splice = False
            else:
                self._counters.bytes_written += moved
                return moved
        got = os.preadv(fd, (self._view[: min(count, _CAPACITY)],), offset)
        self._write_all(self._view[:got])
        return got

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._stop.is_set():
                raise Stopped
            try:
                written = os.write(self._fd, view)
            except BrokenPipeError as exc:
                raise ReaderClosed from exc
            view = view[written:]
            self._counters.bytes_written += written


def pipe_max_size() -> int:
    """The largest pipe buffer an unprivileged process may ask for (1 MiB by default)."""
    try:
        with open(PIPE_MAX_SIZE_FILE, "rb") as limit:
            return int(limit.read())
    except (OSError, ValueError):
        return 1024 * 1024


def grow_pipe(fd: int) -> int:
    """Raise the pipe buffer (64 KiB by default on Linux) as far as allowed, up to PIPE_MAX;
    return its size (0: unknown). A user over the kernel's total for pipes gets less."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:
        return 0
    size = min(PIPE_MAX, pipe_max_size())
    while size >= 64 * 1024:
        with contextlib.suppress(OSError):
            return fcntl.fcntl(fd, set_size, size)
        size //= 2
    return 0


def drain(fd: int, deadline: float) -> None:
    """Read and drop what the feeder writes into the FIFO ``fd`` until it closes its end (EOF)
    or ``deadline``: a write blocked on a full pipe gets through, and the next one sees the
    stop flag. Waits in poll(): a read end opened before the writer came reports no EOF."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while (left := deadline - time.monotonic()) > 0:
        if not poller.poll(left * 1000):
            return
        try:
            if not os.read(fd, CHUNK):
                return
        except BlockingIOError:
            continue
