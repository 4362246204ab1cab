"""Pipe input mode, host side: one feeder thread per channel writing that channel's FIFOs.

Layout and lifecycle of a ``PipeChannel``:

- FIFOs ``<data_dir>/<channel>_<epoch>``, epoch from 0, mode 0644 whatever the umask (a non-root
  container user must be able to open them for reading).
- ``start()`` creates ``_0`` and ``_1`` before it returns, then starts the thread. When epoch N
  ends (sent to the end, or closed early by the reader) its FIFO is removed and ``_{N+2}`` is
  created before the feeder opens ``_{N+1}``: so while a reader reads epoch N, the FIFO of N+1
  exists (ml-io and PipeModeDataset poll for it). Epochs go on until ``stop()``.
- Epoch N: open ``_N`` for writing (blocks until a reader opens it), send the epoch's items
  (``PipeItems.epoch(N)``), close (the reader sees EOF). A reader that closes early ends the
  epoch: EPIPE is expected and counted in ``epochs_closed_early``.
- ``stop()`` wakes the thread wherever it waits, joins it and removes the FIFOs left. Two waits
  need a wake-up, and neither polls: the blocking open of a FIFO nobody reads (stop() opens the
  read end itself, non-blocking, which completes the writer's open; the thread then sees the
  stop flag and closes) and a write to a reader that stopped reading (FIFO writes are
  non-blocking and wait in poll() on the FIFO and on a wake-up pipe that stop() writes to).

Writing: items are read CHUNK_SIZE bytes at a time and written with os.write on the FIFO's fd.
Small pieces (RecordIO headers and padding, small objects, inline manifest values) are coalesced
into writes of up to CHUNK_SIZE (one write per 4 KiB object would cost more than the object:
each write wakes the reader). The buffer is flushed before every item that must be opened
through its Source (an S3 GET may be slow: the reader should not wait for bytes already at
hand), but not before a local file (``PipeItem.path``), which opens in microseconds. The FIFO's
pipe buffer is raised to 1 MiB where the system allows it.

Regular files that need no gunzipping are sent by offset, not through a Python file object:
a ``PipeItem.path`` (objects of a LocalSource, local ``-ref`` files) is opened with os.open,
and a Source stream that is a regular file is used through its fd. Their size comes from
fstat. From SPLICE_MIN bytes up the payload is moved into the FIFO with splice(2): page-cache
pages go into the pipe without a copy through this process, so the container reads about as
fast as from the file itself (benchmarks/pipe_throughput.py); where splice is refused (EINVAL
on some file systems) the same bytes go with pread and write. Smaller files are pread whole
and coalesced as above (a spliced page takes a pipe-buffer slot however few bytes it holds).

RecordIO needs a record's length before its payload. Objects use their listed ``Entry.size`` (an
object whose size changed since listing fails the channel). A payload whose length is unknown
(a gunzipped object; a ``-ref`` object that is not a seekable file) is first spooled, one at a
time, to a SpooledTemporaryFile: in memory up to SPOOL_MEMORY bytes, beyond that on disk in
``spool_dir`` (default: the system temp dir; never the data dir the container sees). Without
RecordIO nothing is spooled: gzip is decompressed while streaming.

Errors: a source failure (unreadable object, bad gzip, size changed) is fatal for the channel.
The feeder removes its FIFOs, then closes the current one (the reader gets a short epoch and
finds no next FIFO), logs the error and keeps it in ``PipeChannel.error`` for the job to report.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import logging
import os
import select
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from emulator.errors import EnvironmentProblem, SourceError
from emulator.request.spec import ChannelSpec
from emulator.stage.pipe.items import (
    CHUNK_SIZE,
    PipeItem,
    PipeItems,
    gunzip,
    iter_chunks,
    known_length,
)
from emulator.stage.pipe.recordio import RecordFramer, RecordLengthError, header, padding, parts

log = logging.getLogger(__name__)

SPOOL_MEMORY = 16 * 1024 * 1024
PIPE_BUFFER = 1024 * 1024
FIFO_MODE = 0o644
STOP_TIMEOUT = 10.0  # seconds stop() waits for a thread stuck in a source read
SPLICE_MIN = 128 * 1024  # local files at least this big are spliced into the FIFO
_SPLICE_REFUSED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


class _Stopped(Exception):
    """stop() was called: unwind the feeder thread."""


class _ReaderClosed(Exception):
    """The reader closed the FIFO before the end of the epoch."""


@dataclass(frozen=True)
class PipeStats:
    """What a channel's feeder has done so far (a snapshot)."""

    epochs_completed: int  # epochs sent to the end (their reader got EOF)
    epochs_closed_early: int  # epochs whose reader closed the FIFO before the end
    bytes_written: int  # bytes written into the FIFOs, RecordIO framing included


class _Counters:
    def __init__(self) -> None:
        self.completed = 0
        self.closed_early = 0
        self.bytes_written = 0


class _FifoWriter:
    """Non-blocking writes to one FIFO, coalescing small pieces; raises _Stopped on stop()."""

    def __init__(self, fd: int, wake_fd: int, stop: threading.Event, counters: _Counters) -> None:
        os.set_blocking(fd, False)
        _grow_pipe(fd)
        self._fd = fd
        self._wake_fd = wake_fd
        self._stop = stop
        self._counters = counters
        self._buffer = bytearray()
        self._splice = hasattr(os, "splice")  # False once the kernel refused it
        self._poll = select.poll()
        self._poll.register(fd, select.POLLOUT)
        self._poll.register(wake_fd, select.POLLIN)

    def write(self, data: bytes | memoryview) -> None:
        if len(data) >= CHUNK_SIZE:  # big pieces go out directly, uncopied
            self.flush()
            self._write_all(data)
            return
        self._buffer += data
        if len(self._buffer) >= CHUNK_SIZE:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            buffer, self._buffer = self._buffer, bytearray()
            self._write_all(buffer)

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._stop.is_set():
                raise _Stopped
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                self._wait()
                continue
            except BrokenPipeError as exc:
                raise _ReaderClosed from exc
            view = view[written:]
            self._counters.bytes_written += written

    def send_file(self, fd: int, offset: int, count: int) -> int:
        """Send ``count`` bytes of the regular file ``fd`` from ``offset``; return how many were
        sent (fewer only when the file ends sooner). Spliced from SPLICE_MIN bytes up, else read
        and coalesced like any small piece."""
        if count < SPLICE_MIN:
            data = os.pread(fd, count, offset) if count else b""
            self.write(data)
            return len(data)
        self.flush()
        sent = 0
        while sent < count:
            if self._stop.is_set():
                raise _Stopped
            want = min(PIPE_BUFFER, count - sent)
            try:
                moved = self._move(fd, offset + sent, want)
            except BlockingIOError:
                self._wait()
                continue
            except BrokenPipeError as exc:
                raise _ReaderClosed from exc
            if not moved:
                break
            sent += moved
        return sent

    def _move(self, fd: int, offset: int, count: int) -> int:
        if self._splice:
            try:
                moved = os.splice(
                    fd, self._fd, count, offset_src=offset, flags=os.SPLICE_F_NONBLOCK
                )
            except OSError as exc:
                if exc.errno not in _SPLICE_REFUSED:
                    raise
                self._splice = False
            else:
                self._counters.bytes_written += moved
                return moved
        data = os.pread(fd, count, offset)
        self._write_all(data)
        return len(data)

    def _wait(self) -> None:
        """Until the reader makes room, closes (POLLERR; the next write fails) or stop()."""
        ready = dict(self._poll.poll())
        if self._wake_fd in ready:
            raise _Stopped


class PipeChannel:
    """The feeder of one Pipe channel: FIFOs ``<data_dir>/<name>_<epoch>`` fed by one thread.

    Use as a context manager, or ``start()`` before the container starts and ``stop()`` after
    it exits (always, also on failure: it removes the FIFOs and joins the thread).
    """

    def __init__(
        self,
        name: str,
        data_dir: Path,
        items: PipeItems,
        *,
        record_io: bool = False,
        gzip: bool = False,
        spool_dir: Path | None = None,
    ) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"bad channel name {name!r}")
        self.name = name
        self.data_dir = Path(data_dir)
        self.items = items
        self.record_io = record_io
        self.gzip = gzip
        self.spool_dir = spool_dir
        self._counters = _Counters()
        self._error: Exception | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards the fields below
        self._thread: threading.Thread | None = None
        self._wake: tuple[int, int] | None = None  # (read, write) ends of the wake-up pipe
        self._opening: Path | None = None  # the FIFO the thread is opening for writing
        self._unblocker: int | None = None  # stop()'s read end of that FIFO
        self._fifos: set[Path] = set()

    @classmethod
    def from_spec(
        cls,
        channel: ChannelSpec,
        data_dir: Path,
        items: PipeItems,
        *,
        spool_dir: Path | None = None,
    ) -> PipeChannel:
        """The feeder of ``channel``: RecordWrapperType and CompressionType taken from it."""
        return cls(
            channel.name,
            data_dir,
            items,
            record_io=channel.record_wrapper == "RecordIO",
            gzip=channel.compression == "Gzip",
            spool_dir=spool_dir,
        )

    def fifo_path(self, epoch: int) -> Path:
        return self.data_dir / f"{self.name}_{epoch}"

    @property
    def error(self) -> Exception | None:
        """The failure that ended the feeding, if any (a SourceError, usually)."""
        return self._error

    def stats(self) -> PipeStats:
        counters = self._counters
        return PipeStats(counters.completed, counters.closed_early, counters.bytes_written)

    def __enter__(self) -> PipeChannel:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Create the FIFOs of epochs 0 and 1, then start feeding. Raises EnvironmentProblem."""
        if self._thread is not None or self._stop.is_set():
            raise RuntimeError(f"Pipe channel {self.name}: start() may be called once")
        try:
            self._make_fifo(0)
            self._make_fifo(1)
        except BaseException:
            self._remove_fifos()
            raise
        self._wake = os.pipe()
        self._thread = threading.Thread(
            target=self._run, args=(self._wake[0],), name=f"pipe-feeder-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop feeding, join the thread, remove the FIFOs. Idempotent; prompt unless the
        thread is inside a source read (then it waits up to STOP_TIMEOUT and logs)."""
        with self._lock:
            self._stop.set()
            if self._wake is not None:
                os.write(self._wake[1], b"\0")
            self._unblock_open()
        thread = self._thread
        if thread is not None:
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                log.warning("Pipe channel %s: feeder still busy in a source read", self.name)
        with self._lock:
            if self._unblocker is not None:
                os.close(self._unblocker)
                self._unblocker = None
        self._remove_fifos()

    # --- FIFO bookkeeping (any thread) -----------------------------------------------------

    def _make_fifo(self, epoch: int) -> None:
        path = self.fifo_path(epoch)
        with self._lock:
            if self._stop.is_set():
                return
            try:
                os.mkfifo(path, FIFO_MODE)
                self._fifos.add(path)
                os.chmod(path, FIFO_MODE)  # whatever the umask
            except OSError as exc:
                raise EnvironmentProblem(
                    f"cannot create the Pipe-mode FIFO {path}: {exc.strerror}"
                ) from exc

    def _remove_fifo(self, path: Path) -> None:
        with self._lock:
            path.unlink(missing_ok=True)
            self._fifos.discard(path)

    def _remove_fifos(self) -> None:
        with self._lock:
            for path in self._fifos:
                path.unlink(missing_ok=True)
            self._fifos.clear()

    def _unblock_open(self) -> None:
        """(Lock held.) Complete the thread's blocking open by opening the read end."""
        if self._opening is None or self._unblocker is not None:
            return
        try:
            self._unblocker = os.open(self._opening, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:  # the FIFO is gone: then the thread is not blocked in it
            log.debug("Pipe channel %s: no need to unblock %s (%s)", self.name, self._opening, exc)

    # --- the feeder thread -----------------------------------------------------------------

    def _run(self, wake_fd: int) -> None:
        try:
            self._serve_epochs(wake_fd)
        except _Stopped:
            pass
        except Exception as exc:
            self._remove_fifos()
            self._error = exc
            log.error("Pipe channel %s: feeding stopped: %s", self.name, exc)
        finally:
            with self._lock:
                wake, self._wake = self._wake, None
            if wake is not None:
                for fd in wake:
                    os.close(fd)

    def _serve_epochs(self, wake_fd: int) -> None:
        epoch = 0
        while (fd := self._open_for_writing(self.fifo_path(epoch))) is not None:
            try:
                self._serve_epoch(_FifoWriter(fd, wake_fd, self._stop, self._counters), epoch)
            except Exception:
                self._remove_fifos()  # before the close: the reader must find no next epoch
                raise
            finally:
                os.close(fd)
            self._remove_fifo(self.fifo_path(epoch))
            self._make_fifo(epoch + 2)
            epoch += 1

    def _open_for_writing(self, path: Path) -> int | None:
        """The FIFO's write end once a reader opened it; None when stop() came first."""
        with self._lock:
            if self._stop.is_set():
                return None
            self._opening = path
        try:
            fd = os.open(path, os.O_WRONLY)  # blocks until a reader, or stop(), opens it
        finally:
            with self._lock:
                self._opening = None
        if self._stop.is_set():
            os.close(fd)
            return None
        return fd

    def _serve_epoch(self, writer: _FifoWriter, epoch: int) -> None:
        try:
            for item in self.items.epoch(epoch):
                if not item.inline and item.path is None:
                    writer.flush()  # opening it may take long (an S3 GET)
                self._send(writer, item)
            writer.flush()
        except _ReaderClosed:
            self._counters.closed_early += 1
            log.debug("Pipe channel %s: epoch %d closed early by the reader", self.name, epoch)
            return
        self._counters.completed += 1

    def _send(self, writer: _FifoWriter, item: PipeItem) -> None:
        gunzipping = self.gzip and not item.inline
        if item.path is not None and not gunzipping:
            self._send_path(writer, item, item.path)
            return
        try:
            with item.open() as stream:
                local = None if gunzipping or item.inline else _regular_file(stream)
                if local is not None:
                    self._send_file(writer, item, *local)
                    return
                chunks = self._checked(iter_chunks(stream))
                if gunzipping:
                    chunks = gunzip(chunks, item.name)
                if not self.record_io:
                    for chunk in chunks:
                        writer.write(chunk)
                    return
                length = None if gunzipping else item.size
                if length is None and not gunzipping:
                    length = known_length(stream)
                self._send_record(writer, item, length, chunks)
        except OSError as exc:
            raise SourceError(f"{item.name}: cannot read ({exc})") from exc

    def _send_record(
        self, writer: _FifoWriter, item: PipeItem, length: int | None, chunks: Iterable[bytes]
    ) -> None:
        if length is None:
            spool_dir = None if self.spool_dir is None else str(self.spool_dir)
            with tempfile.SpooledTemporaryFile(SPOOL_MEMORY, dir=spool_dir) as spool:
                for chunk in chunks:
                    spool.write(chunk)
                length = spool.tell()
                spool.seek(0)
                self._send_record(writer, item, length, iter_chunks(spool))
            return
        framer = RecordFramer(length)
        try:
            writer.write(framer.begin())
            for chunk in chunks:
                for piece in framer.feed(chunk):
                    writer.write(piece)
            writer.write(framer.end())
        except RecordLengthError as exc:
            raise SourceError(
                f"{item.name}: {exc} (expected {length}); was it modified while being read?"
            ) from exc

    def _send_path(self, writer: _FifoWriter, item: PipeItem, path: str) -> None:
        """An item that is a local file: opened here (cheaper than a Python file object)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO never blocks
        except OSError as exc:
            raise SourceError(f"{item.name}: cannot open {path} ({exc.strerror})") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise SourceError(f"{item.name}: {path} is not a regular file")
            self._send_file(writer, item, fd, 0, info.st_size)
        except OSError as exc:
            raise SourceError(f"{item.name}: cannot read {path} ({exc.strerror})") from exc
        finally:
            os.close(fd)

    def _send_file(
        self, writer: _FifoWriter, item: PipeItem, fd: int, start: int, file_size: int
    ) -> None:
        """A regular file from ``start`` to its end (``file_size``, from fstat): as-is, or
        framed as one RecordIO record of the item's listed size."""
        available = file_size - start
        if not self.record_io:
            writer.send_file(fd, start, available)
            return
        length = available if item.size is None else item.size
        if available != length:
            raise _changed(item, length, f"the file now holds {available} bytes")
        offset = start
        for flag, size in parts(length):
            writer.write(header(size, flag))
            if writer.send_file(fd, offset, size) < size:
                raise _changed(item, length, "fewer payload bytes than the record length")
            offset += size
            writer.write(padding(size))

    def _checked(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Stop between chunks too (spooling does not go through the FIFO writer)."""
        for chunk in chunks:
            if self._stop.is_set():
                raise _Stopped
            yield chunk


def _changed(item: PipeItem, length: int, problem: str) -> SourceError:
    return SourceError(
        f"{item.name}: {problem} (expected {length}); was it modified while being read?"
    )


def _regular_file(stream: BinaryIO) -> tuple[int, int, int] | None:
    """(fd, position, file size) of a stream that is a plain file object (``open(path, "rb")``)
    over a regular file, else None (S3 bodies; wrappers that transform what they read)."""
    if not isinstance(getattr(stream, "raw", stream), io.FileIO):
        return None
    try:
        fd = stream.fileno()
        info = os.fstat(fd)
        position = stream.tell()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return fd, position, info.st_size


def _grow_pipe(fd: int) -> None:
    """Raise the pipe buffer (64 KiB by default on Linux): fewer wake-ups, more throughput."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, set_size, PIPE_BUFFER)
