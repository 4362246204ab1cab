"""The hosts' checkpoint dirs as the sync reads them: written by a training container, meanwhile.

Regular files only: ``scan`` skips symlinks, FIFOs, sockets, devices and names that are not
UTF-8 (no S3 key), and ``open_below`` opens a file one path component at a time with
O_NOFOLLOW, so a link swapped in after the scan is refused too. A file is sent exactly as big
as it was when opened (``FixedSizeReader``), whatever the container does to it meanwhile.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from emulator.storage.local_folder import scan

__all__ = [
    "FixedSizeReader",
    "Signature",
    "Snapshot",
    "fixed_size_file",
    "open_below",
    "scan",
    "signature",
]

RACY_SECONDS = 0.1
READ_CHUNK = 1024 * 1024

Signature = tuple[int, int, int, int]


def signature(info: os.stat_result) -> Signature:
    """What tells a changed file: (inode, size, mtime, ctime)."""
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


@dataclass
class Snapshot:
    """A regular file of a host dir, open for reading (``fd``), as it was when opened.

    ``racy``: its times were within RACY_SECONDS of the moment it was opened, so it may be
    written again with the same times (git's "racy clean" rule): it is sent again next time."""

    relative: str
    fd: int
    size: int
    signature: Signature
    racy: bool


def open_below(root: Path, relative: str) -> Snapshot | None:
    """``root``/``relative`` opened for reading if it is a regular file reached without any
    symlink; None when it is gone, a symlink (anywhere on the way) or not a regular file."""
    directory_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    parts = relative.split("/")
    folder = os.open(root, directory_flags)
    try:
        for part in parts[:-1]:
            inner = os.open(part, directory_flags, dir_fd=folder)
            os.close(folder)
            folder = inner
        # O_NONBLOCK: a FIFO swapped in must not block the open.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(parts[-1], flags, dir_fd=folder)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENXIO):
            return None
        raise
    finally:
        os.close(folder)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    now = time.time_ns()
    racy = max(info.st_mtime_ns, info.st_ctime_ns) >= now - int(RACY_SECONDS * 1e9)
    return Snapshot(relative, fd, info.st_size, signature(info), racy)


class FixedSizeReader(io.RawIOBase):
    """Exactly ``size`` bytes of an open file descriptor (which it owns), whatever happens to
    the file meanwhile.

    A file that shrinks while it is sent is padded with zero bytes and one that grows is cut at
    ``size``, so a request body never disagrees with its Content-Length (a short body would
    leave the request hanging until the read timeout). The object written is then torn: the
    checkpoint sync, which reads files still being written, sends them again once they changed.
    Reads are positional (``os.pread``): no shared file offset between threads."""

    def __init__(self, fd: int, size: int) -> None:
        super().__init__()
        self._fd = fd
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = max(0, min(len(view), self._size - self._pos))
        done = 0
        while done < want:
            data = os.pread(self._fd, want - done, self._pos + done)
            if not data:  # the file shrank: pad
                view[done:want] = bytes(want - done)
                break
            view[done : done + len(data)] = data
            done += len(data)
        self._pos += want
        return want

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def fixed_size_file(fd: int, size: int) -> BinaryIO:
    """A buffered binary file of exactly ``size`` bytes of ``fd`` (see FixedSizeReader)."""
    return io.BufferedReader(FixedSizeReader(fd, size), buffer_size=READ_CHUNK)
