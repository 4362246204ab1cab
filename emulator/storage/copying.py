"""Copy many local files into a fresh tree fast: the byte work stays in the kernel.

What makes a copy of 20,000 small files slow in Python is not the bytes but the overhead per
file (a future per file, a ``mkdir(parents=True)`` per file, file objects and their buffers).
So: the parent folders are made once, up front; a few worker threads take files from one
shared list (a cheap lock per file, no future); each file is two ``os.open`` and a
``copy_file_range`` loop (the kernel copies page-cache to page-cache, no Python buffer), with
a ``read``/``write`` loop where the file system cannot (another file system on some kernels,
or a special one that reports nothing to copy). The system calls release the GIL, so the
workers' file creations overlap: 20,000 x 4 KiB copy about twice as fast as ``cp -r``.

On the first error (or Ctrl-C in the caller) the files not yet begun are left alone and the
copies under way stop at their next chunk; the first error is raised once every worker has
stopped.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from emulator.progress import NO_PROGRESS, Progress

CHUNK = 8 * 1024 * 1024
WORKERS = 4
_OPEN_SOURCE = os.O_RDONLY | os.O_CLOEXEC
_OPEN_TARGET = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
# copy_file_range's "not between these two files": fall back to read/write.
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}


@dataclass(frozen=True)
class FileCopy:
    """Copy the file at ``source`` (links followed) to ``target``, ``size`` bytes expected."""

    source: str
    target: str
    size: int


class Cancelled(Exception):
    """A copy stopped because another one failed or the caller gave up."""


def copy_files(
    copies: Sequence[FileCopy],
    *,
    progress: Progress = NO_PROGRESS,
    failure: Callable[[FileCopy, OSError], Exception],
    size_changed: Callable[[FileCopy, int], Exception],
    workers: int = WORKERS,
) -> None:
    """Copy every file, parent folders made first. ``failure`` turns an OSError of one copy
    into the exception to raise; ``size_changed`` is raised when a file did not hold its
    expected size (copied bytes given)."""
    make_parents(copies)
    run = _Run(copies, progress, failure, size_changed)
    threads = [
        threading.Thread(target=run.work, name=f"copy-{index}", daemon=True)
        for index in range(min(workers, len(copies)))
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        run.cancelled.set()
        for thread in threads:
            thread.join()
        raise
    if run.error is not None:
        raise run.error


def make_parents(copies: Sequence[FileCopy]) -> None:
    """Every target's folder, each made once (shallowest first, so no ``parents=True`` walk)."""
    folders = {os.path.dirname(copy.target) for copy in copies}
    for folder in sorted(folders, key=lambda path: path.count(os.sep)):
        os.makedirs(folder, exist_ok=True)


class _Run:
    """The shared state of one ``copy_files``: the next file to take, the first error."""

    def __init__(
        self,
        copies: Sequence[FileCopy],
        progress: Progress,
        failure: Callable[[FileCopy, OSError], Exception],
        size_changed: Callable[[FileCopy, int], Exception],
    ) -> None:
        self.copies = copies
        self.progress = progress
        self.failure = failure
        self.size_changed = size_changed
        self.cancelled = threading.Event()
        self.error: Exception | None = None
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> FileCopy | None:
        with self._lock:
            if self._next >= len(self.copies) or self.cancelled.is_set():
                return None
            self._next += 1
            return self.copies[self._next - 1]

    def work(self) -> None:
        while (copy := self.take()) is not None:
            try:
                copied = self.copy(copy)
                if copied != copy.size:
                    raise self.size_changed(copy, copied)
            except Cancelled:
                return
            except OSError as exc:
                self.fail(self.failure(copy, exc))
                return
            except Exception as exc:  # handed to the caller's thread
                self.fail(exc)
                return
            self.progress.object_done()

    def fail(self, error: Exception) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
        self.cancelled.set()

    def copy(self, copy: FileCopy) -> int:
        source = os.open(copy.source, _OPEN_SOURCE)
        try:
            target = os.open(copy.target, _OPEN_TARGET, 0o666)
            try:
                return self._copy_bytes(source, target)
            finally:
                os.close(target)
        finally:
            os.close(source)

    def _copy_bytes(self, source: int, target: int) -> int:
        copied = 0
        kernel_copy = True
        while not self.cancelled.is_set():
            count = 0
            if kernel_copy:
                try:
                    count = os.copy_file_range(source, target, CHUNK)
                except OSError as exc:
                    if exc.errno not in _NO_KERNEL_COPY:
                        raise
                    kernel_copy = False
                if count == 0:
                    # End of file, or a file system that copies nothing (procfs-like): a
                    # read tells them apart, and the rest goes through read/write.
                    kernel_copy = False
                    count = self._read_write(source, target)
            else:
                count = self._read_write(source, target)
            if count == 0:
                return copied
            copied += count
            self.progress.advance(count)
        raise Cancelled

    @staticmethod
    def _read_write(source: int, target: int) -> int:
        data = os.read(source, CHUNK)
        view = memoryview(data)
        while view:
            view = view[os.write(target, view) :]
        return len(data)
