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
  need a wake-up, and neither polls: the blocking open of a FIFO nobody reads and a blocking
  write to a reader that stopped reading. stop() opens the read end of the FIFO the thread is
  on (which completes its open) and reads it (which makes room for its write) until the thread
  closes it: before each write the thread sees the stop flag and closes.

Writing (emulator.stage.pipe.writer): blocking writes, small pieces gathered into writes of
FLUSH_AT bytes, regular files of SPLICE_MIN bytes and more spliced (page-cache pages go into
the pipe without passing through this process); from HELPER_MIN bytes up by the channel's
helper process (emulator.stage.pipe.splicer), which needs no GIL. The buffer is flushed
before every item that must be opened through its Source (an S3 GET may be slow: the reader
should not wait for bytes already at hand), but not before a local file (opened in microseconds).

Regular files that need no gunzipping are sent by offset, not through a Python file object: a
``PipeItem.path`` (local ``-ref`` files) is opened with os.open and fstat'ed, and a Source
stream that is a regular file is used through its fd. The objects of a LocalSource
(``PipeItems.local_files``) take a shorter way still, with no PipeItem made: each small one is
opened, read with one preadv straight into the write buffer (RecordIO header and padding packed
around it) and closed; one that is big, or does not hold its listed size, goes the way of a
``PipeItem.path``. RecordIO over a spliced file writes only the 8-byte header and the padding.

RecordIO needs a record's length before its payload. Objects use their listed ``Entry.size`` (an
object whose size changed since listing fails the channel). A payload whose length is unknown
(a gunzipped object; a ``-ref`` object that is not a seekable file) is first spooled, one at a
time: in memory up to SPOOL_MEMORY bytes, beyond that in an unnamed temporary file in
``spool_dir`` (default: the system temp dir; never the data dir the container sees), which is
then spliced like any file. Without RecordIO nothing is spooled: gzip is decompressed while
streaming.

Errors: a source failure (unreadable object, bad gzip, size changed) is fatal for the channel.
The feeder removes its FIFOs, then closes the current one (the reader gets a short epoch and
finds no next FIFO), logs the error and keeps it in ``PipeChannel.error`` for the job to report.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from emulator.errors import EnvironmentProblem, SourceError
from emulator.request.spec import ChannelSpec
from emulator.stage.pipe.items import (
    LocalFiles,
    PipeItem,
    PipeItems,
    gunzip,
    iter_chunks,
    known_length,
    regular_file,
)
from emulator.stage.pipe.recordio import RecordFramer, RecordLengthError, header, padding, parts
from emulator.stage.pipe.splicer import LazySplicer
from emulator.stage.pipe.writer import (
    OPEN_FLAGS,
    SPLICE_STEP,
    Counters,
    FifoWriter,
    ReaderClosed,
    Stopped,
    drain,
)

log = logging.getLogger(__name__)

SPOOL_MEMORY = 16 * 1024 * 1024
FIFO_MODE = 0o644
STOP_TIMEOUT = 10.0  # seconds stop() waits for a thread stuck in a source read


@dataclass(frozen=True)
class PipeStats:
    """What a channel's feeder has done so far (a snapshot)."""

    epochs_completed: int  # epochs sent to the end (their reader got EOF)
    epochs_closed_early: int  # epochs whose reader closed the FIFO before the end
    bytes_written: int  # bytes written into the FIFOs, RecordIO framing included


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
        self._counters = Counters()
        self._error: Exception | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards the fields below
        self._thread: threading.Thread | None = None
        self._current: Path | None = None  # the FIFO the thread is opening or has open
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
        self._thread = threading.Thread(
            target=self._run, name=f"pipe-feeder-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop feeding, join the thread, remove the FIFOs. Idempotent; prompt unless the
        thread is inside a source read (then it waits up to STOP_TIMEOUT and logs)."""
        deadline = time.monotonic() + STOP_TIMEOUT
        with self._lock:
            self._stop.set()
            reader = self._open_current()
        try:
            if reader is not None:
                drain(reader, deadline)
            thread = self._thread
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    log.warning("Pipe channel %s: feeder still busy in a source read", self.name)
        finally:
            if reader is not None:
                os.close(reader)  # after the join: the thread never waits in an open again
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

    def _open_current(self) -> int | None:
        """(Lock held.) A read end of the FIFO the thread is opening or writing: its open
        completes, and reading makes room for a write blocked on a full pipe."""
        if self._current is None:
            return None
        try:
            return os.open(self._current, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:  # gone: the thread removed it on a failure and is ending
            log.debug("Pipe channel %s: cannot open %s (%s)", self.name, self._current, exc)
            return None

    # --- the feeder thread -----------------------------------------------------------------

    def _run(self) -> None:
        splicer = LazySplicer(SPLICE_STEP)  # a helper process, started on the first big file
        try:
            self._serve_epochs(splicer)
        except Stopped:
            pass
        except Exception as exc:
            self._remove_fifos()
            self._error = exc
            log.error("Pipe channel %s: feeding stopped: %s", self.name, exc)
        finally:
            splicer.close()

    def _serve_epochs(self, splicer: LazySplicer) -> None:
        epoch = 0
        while (fd := self._open_for_writing(self.fifo_path(epoch))) is not None:
            try:
                writer = FifoWriter(fd, self._stop, self._counters, splicer)
                self._serve_epoch(writer, epoch)
            except Exception:
                self._remove_fifos()  # before the close: the reader must find no next epoch
                raise
            finally:
                self._close(fd)
            self._remove_fifo(self.fifo_path(epoch))
            self._make_fifo(epoch + 2)
            epoch += 1

    def _open_for_writing(self, path: Path) -> int | None:
        """The FIFO's write end once a reader opened it; None when stop() came first."""
        with self._lock:
            if self._stop.is_set():
                return None
            self._current = path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)  # until a reader, or stop(), opens it
        except BaseException:
            with self._lock:
                self._current = None
            raise
        if self._stop.is_set():
            self._close(fd)
            return None
        return fd

    def _close(self, fd: int) -> None:
        """Close the FIFO's write end; under the lock, so that stop() opens no FIFO the thread
        has left (its read would then wait for a writer that never comes)."""
        with self._lock:
            os.close(fd)
            self._current = None

    def _serve_epoch(self, writer: FifoWriter, epoch: int) -> None:
        try:
            local = None if self.gzip else self.items.local_files
            if local is not None:
                self._send_local_files(writer, epoch, local)
            else:
                for item in self.items.epoch(epoch):
                    if not item.inline and item.path is None:
                        writer.flush()  # opening it may take long (an S3 GET)
                    self._send(writer, item)
            writer.flush()
        except ReaderClosed:
            self._counters.closed_early += 1
            log.debug("Pipe channel %s: epoch %d closed early by the reader", self.name, epoch)
            return
        self._counters.completed += 1

    def _send_local_files(self, writer: FifoWriter, epoch: int, files: LocalFiles) -> None:
        """An epoch of local files (a LocalSource): small ones read straight into the write
        buffer; no PipeItem is made unless a file needs a closer look (big, changed, gone)."""
        indices = iter(self.items.order(epoch))
        paths, sizes = files
        while (index := writer.add_small_files(indices, paths, sizes, self.record_io)) is not None:
            for item in self.items.unit(index):
                self._send(writer, item)

    def _send(self, writer: FifoWriter, item: PipeItem) -> None:
        gunzipping = self.gzip and not item.inline
        if item.path is not None and not gunzipping:
            self._send_path(writer, item, item.path)
            return
        try:
            with item.open() as stream:
                local = None if gunzipping or item.inline else regular_file(stream)
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
        self,
        writer: FifoWriter,
        item: PipeItem,
        length: int | None,
        chunks: Iterable[bytes | bytearray],
    ) -> None:
        if length is None:
            self._send_spooled(writer, item, iter(chunks))
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

    def _send_spooled(
        self, writer: FifoWriter, item: PipeItem, chunks: Iterator[bytes | bytearray]
    ) -> None:
        """A record of unknown length: its payload kept in memory up to SPOOL_MEMORY bytes,
        beyond that in an unnamed temporary file in spool_dir, then spliced from there."""
        memory = bytearray()
        for chunk in chunks:
            memory += chunk
            if len(memory) > SPOOL_MEMORY:
                break
        else:
            self._send_record(writer, item, len(memory), (memory,))
            return
        spool_dir = None if self.spool_dir is None else str(self.spool_dir)
        with tempfile.TemporaryFile(dir=spool_dir) as spool:
            spool.write(memory)
            del memory
            for chunk in chunks:
                spool.write(chunk)
            spool.flush()
            self._send_framed_file(writer, item, spool.fileno(), 0, spool.tell())

    def _send_path(self, writer: FifoWriter, item: PipeItem, path: str) -> None:
        """An item that is a local file: opened here (cheaper than a Python file object)."""
        try:
            fd = os.open(path, OPEN_FLAGS)
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
        self, writer: FifoWriter, item: PipeItem, fd: int, start: int, file_size: int
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
        self._send_framed_file(writer, item, fd, start, length)

    def _send_framed_file(
        self, writer: FifoWriter, item: PipeItem, fd: int, start: int, length: int
    ) -> None:
        """``length`` bytes of a regular file from ``start``, as RecordIO: the payload spliced,
        only the headers and padding written."""
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
                raise Stopped
            yield chunk


def _changed(item: PipeItem, length: int, problem: str) -> SourceError:
    return SourceError(
        f"{item.name}: {problem} (expected {length}); was it modified while being read?"
    )
