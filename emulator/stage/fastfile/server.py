"""The FastFile file system process: a read-only FUSE view of one channel's objects.

Started by ``FastFileMount`` as ``python -m emulator.stage.fastfile.server`` (the module name in
its command line, ``mounts.SERVER_MODULE``, marks it for ``find_stale_mounts``), so FUSE's
signal handling and threads stay out of the emulator and a crash of the file system cannot
hang it. It speaks ``emulator.stage.fastfile.protocol``: a ``MountConfig`` on stdin, kept open
as a lifeline, and one report line on stdout; its stderr is its log.

Listing is the only up-front cost: the tree and the sizes come from the entries, bytes are
fetched on demand through ``Source.read_range`` into a bounded block cache with sequential
read-ahead (``blockcache``), and copied from the cached blocks straight into libfuse's reply
buffer (``read_into``). Files opened in listing order get the next file's first block fetched
ahead, and their read-ahead runs on into the next files. The mount is tagged with fsname
``emulator-fastfile:<pid>:<label>``.

Keep this module light to import: it must not pull in docker, rich or the request validator.
For an S3 channel even boto3 is imported beside the mount, not before it (``_DeferredSource``),
and its client made while the container starts: the mount is ready in about 0.1 s.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, NoReturn

from emulator.config import S3Settings
from emulator.errors import EmulatorError, EnvironmentProblem
from emulator.stage.fastfile.blockcache import BlockCache, ReadHandle
from emulator.stage.fastfile.mounts import FSNAME
from emulator.stage.fastfile.protocol import (
    STATS_XATTR,
    MountConfig,
    Ready,
    Report,
    StartError,
    encode_report,
    encode_stats,
)
from emulator.storage.base import Entry, Source

__all__ = ["FastFileOperations", "Tree", "build_tree", "main", "serve"]

FILE_BLKSIZE = 1024 * 1024  # st_blksize: sets the buffer size of buffered readers (Python io)
ATTR_TIMEOUT_SECONDS = 86400.0  # the view never changes while mounted
# glibc mallopt parameters (malloc.h) and the values the server sets (``_keep_freed_memory``).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum: blocks (8 MiB) come from the heap
_TRIM_THRESHOLD = 1024 * 1024 * 1024  # freed blocks stay mapped for the next ones
_ARENA_MAX = 2

log = logging.getLogger("emulator.fastfile")


@dataclass
class Tree:
    """The directory view of the entries: '/'-rooted paths to entry ids and child names."""

    files: dict[str, int]
    dirs: dict[str, list[str]]
    subdirs: dict[str, int]  # per directory, for st_nlink


def build_tree(entries: Sequence[Entry]) -> Tree:
    """Directories from the '/'-separated relative paths. An object whose name is also a
    directory prefix of other objects ('a' and 'a/b') is hidden behind the directory."""
    dirs: dict[str, set[str]] = {"/": set()}
    files: dict[str, int] = {}
    for file_id, entry in enumerate(entries):
        parent = "/"
        *folders, name = entry.relative_path.split("/")
        for folder in folders:
            dirs[parent].add(folder)
            parent = f"{parent.rstrip('/')}/{folder}"
            dirs.setdefault(parent, set())
        dirs[parent].add(name)
        files[f"{parent.rstrip('/')}/{name}"] = file_id
    for path in files.keys() & dirs.keys():
        log.warning("%s is both an object and a folder: showing the folder", path)
        del files[path]
    subdirs = dict.fromkeys(dirs, 0)
    for path in dirs:
        if path != "/":
            subdirs[path.rsplit("/", 1)[0] or "/"] += 1
    return Tree(files, {path: sorted(names) for path, names in dirs.items()}, subdirs)


def _read_only(*_args: object) -> int:
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


class FastFileOperations:
    """mfusepy operations of the read-only view (paths are '/'-rooted, as FUSE gives them)."""

    use_ns = True  # times in nanoseconds (mfusepy warns about float seconds)

    def __init__(
        self, entries: Sequence[Entry], cache: BlockCache, on_ready: Callable[[], None]
    ) -> None:
        self.entries = list(entries)
        self.tree = build_tree(self.entries)
        self.cache = cache
        self._on_ready = on_ready
        self._handles: dict[int, ReadHandle] = {}
        self._next_handle = 1
        self._last_opened = -1  # the file opened last, to see files opened in listing order
        self._lock = threading.Lock()
        self._time_ns = time.time_ns()
        self._total_bytes = sum(entry.size for entry in self.entries)

    def init(self, path: str) -> None:
        self._on_ready()

    def destroy(self, path: str) -> None:
        self.cache.close()

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        times = {"st_atime": self._time_ns, "st_mtime": self._time_ns, "st_ctime": self._time_ns}
        if path in self.tree.dirs:
            nlink = 2 + self.tree.subdirs[path]
            return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": nlink, **times}
        file_id = self.tree.files.get(path)
        if file_id is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        size = self.entries[file_id].size
        return {
            "st_mode": stat.S_IFREG | 0o444,
            "st_nlink": 1,
            "st_size": size,
            "st_blocks": -(-size // 512),
            "st_blksize": FILE_BLKSIZE,
            **times,
        }

    def readdir(self, path: str, fh: int) -> list[tuple[str, int, int]]:
        names = self.tree.dirs.get(path)
        if names is None:
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        listing = [(".", stat.S_IFDIR, 0), ("..", stat.S_IFDIR, 0)]
        for name in names:  # the type lets os.scandir/os.walk skip a stat per name
            is_dir = self._child(path, name) in self.tree.dirs
            listing.append((name, stat.S_IFDIR if is_dir else stat.S_IFREG, 0))
        return listing

    def open(self, path: str, flags: int) -> int:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        file_id = self.tree.files.get(path)
        if file_id is None:
            raise OSError(errno.EISDIR if path in self.tree.dirs else errno.ENOENT, path)
        with self._lock:
            handle = self._next_handle
            self._next_handle += 1
            in_order = file_id == self._last_opened + 1
            # A file opened in listing order reads ahead into the next ones.
            following = self.entries if in_order else None
            self._handles[handle] = ReadHandle(
                self.cache, file_id, self.entries[file_id], following
            )
            self._last_opened = file_id
        # A reader going through the files in listing order (shards, a sorted walk) finds
        # the next file's first block fetched while it reads this one.
        after = file_id + 1
        if in_order and after < len(self.entries) and self.entries[after].size:
            self.cache.prefetch(after, self.entries[after], 0)
        return handle

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        """The bytes as one object (mfusepy's contract; the mount itself uses read_into)."""
        pieces = self._pieces(fh, size, offset)
        return b"".join(block[start:end] for block, start, end in pieces)

    def read_into(self, fh: int, buffer: int, size: int, offset: int) -> int:
        """Copy up to ``size`` bytes at ``offset`` to the address ``buffer`` straight from the
        cached blocks (one copy; no slicing or joining); return how many."""
        done = 0
        for block, start, end in self._pieces(fh, size, offset):
            base = ctypes.cast(ctypes.c_char_p(block), ctypes.c_void_p).value or 0
            ctypes.memmove(buffer + done, base + start, end - start)
            done += end - start
        return done

    def _pieces(self, fh: int, size: int, offset: int) -> list[tuple[bytes, int, int]]:
        handle = self._handles.get(fh)
        if handle is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        try:
            return handle.pieces(offset, size)
        except Exception as exc:  # any failure to get the bytes is an I/O error to the reader
            log.error("reading %s at %d: %s", handle.entry.relative_path, offset, exc)
            raise OSError(errno.EIO, str(exc)) from exc

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            self._handles.pop(fh, None)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        total = self._total_bytes
        return {
            "f_bsize": 4096,
            "f_frsize": 4096,
            "f_blocks": -(-total // 4096),
            "f_bfree": 0,
            "f_bavail": 0,
            "f_files": len(self.entries),
            "f_ffree": 0,
            "f_namemax": 255,
        }

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        if path == "/" and name == STATS_XATTR:
            return encode_stats(self.cache.stats().as_dict())
        raise OSError(errno.ENODATA, os.strerror(errno.ENODATA))

    def listxattr(self, path: str) -> list[str]:
        return []

    # Everything that would change the view. The mount is also `ro`, so the kernel refuses
    # most of these before they get here.
    chmod = chown = create = link = mkdir = mknod = rename = rmdir = _read_only
    removexattr = setxattr = symlink = truncate = unlink = utimens = write = _read_only

    @staticmethod
    def _child(parent: str, name: str) -> str:
        return f"{parent.rstrip('/')}/{name}"


def _keep_freed_memory() -> None:
    """Make glibc reuse the memory of evicted blocks instead of giving it back to the kernel.

    By default every fetched 8 MiB block (and libfuse's 1 MiB reply buffer per read) is a
    fresh mmap whose pages fault in one by one as the bytes arrive, then is unmapped when
    evicted: about 150,000 page faults per GiB read (a profile of a sequential read on
    SeaweedFS: a sixth of the server's CPU time on 2 cores). Blocks served from the heap,
    kept after free and shared by few arenas, fault in once, while the cache fills; the
    process never holds more than its cache budget and the fetches in flight anyway."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the defaults stay
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        libc.mallopt(_M_TOP_PAD, 64 * 1024 * 1024)
        libc.mallopt(_M_ARENA_MAX, _ARENA_MAX)


def _report(stream: IO[bytes], report: Report) -> None:
    stream.write(encode_report(report))
    stream.flush()


def _watch_lifeline(stdin: IO[bytes]) -> None:
    """Block until the parent closes our stdin (or dies), then stop the FUSE loop: SIGTERM
    to the main thread makes libfuse leave its loop and unmount."""
    while stdin.read(65536):
        pass
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)


class _DeferredSource(Source):
    """An S3 channel's Source, made on first use: importing boto3 (~0.15 s) need not delay
    the mount, the warm-up makes it while the container starts (``serve``)."""

    def __init__(self, config: MountConfig) -> None:
        self.uri = config.data_source.uri
        self._config = config
        self._lock = threading.Lock()
        self._source: Source | None = None

    def get(self) -> Source:
        with self._lock:
            if self._source is None:
                from emulator.storage import open_source

                self._source = open_source(self._config.data_source, self._config.s3_settings)
            return self._source

    def entries(self) -> list[Entry]:
        return self.get().entries()

    def open(self, entry: Entry) -> BinaryIO:
        return self.get().open(entry)

    def read_range(self, entry: Entry, offset: int, length: int) -> bytes:
        return self.get().read_range(entry, offset, length)

    def download(self, *args: Any, **kwargs: Any) -> None:
        self.get().download(*args, **kwargs)  # not used by the file system


def _warm_up(source: Source) -> None:
    with contextlib.suppress(Exception):  # a real problem shows on the first read
        if isinstance(source, _DeferredSource):
            source = source.get()
        s3 = sys.modules.get("emulator.storage.s3")  # not imported: not an S3 channel
        if s3 is not None and isinstance(source, s3.S3Source):
            s3.s3_client(source.settings)


def _open_source(config: MountConfig) -> Source:
    """The channel's Source: S3 ones made on first use; others now, so a bad URI is a
    ``StartError``."""
    from emulator.storage import is_s3_uri, open_source

    if is_s3_uri(config.data_source.uri):
        return _DeferredSource(config)
    return open_source(config.data_source, config.s3_settings)


def _fetch_workers(config: MountConfig, source: Source) -> int:
    """No more ranged GETs at once than the S3 client keeps connections for (its pool is
    EMULATOR_S3_MAX_CONCURRENCY + 8): more would open and drop a connection per fetch."""
    if not isinstance(source, _DeferredSource):
        return config.fetch_workers
    settings = config.s3_settings or S3Settings.from_environ()
    return max(1, min(config.fetch_workers, settings.max_concurrency + 8))


def serve(config: MountConfig, out: IO[bytes]) -> int:
    """Mount and serve until unmounted (the lifeline closed, SIGTERM, fusermount3 -u);
    report ``Ready`` on ``out`` once the kernel has mounted the file system."""
    source = _open_source(config)
    cache = BlockCache(
        source,
        block_size=config.block_size,
        capacity_bytes=config.cache_bytes,
        readahead_blocks=config.readahead_blocks,
        fetch_workers=_fetch_workers(config, source),
    )
    # Import boto3 and make the S3 client (~0.3 s together) while the kernel mounts the file
    # system and the container starts, not on its first read.
    threading.Thread(target=_warm_up, args=(cache.source,), daemon=True).start()

    def on_ready() -> None:
        # The lifeline first: if the parent is already gone, the report fails but we still exit.
        threading.Thread(target=_watch_lifeline, args=(sys.stdin.buffer,), daemon=True).start()
        with contextlib.suppress(OSError):
            _report(out, Ready())

    operations = FastFileOperations(config.entries, cache, on_ready)
    try:
        import mfusepy
    except (ImportError, OSError) as exc:
        raise EnvironmentProblem(f"cannot load mfusepy/libfuse3: {exc}") from exc

    class FastFileFUSE(mfusepy.FUSE):  # type: ignore[misc]
        """mfusepy's read callback copies the returned bytes into libfuse's buffer: a second
        copy of every byte on top of slicing the block. Fill the buffer from the blocks."""

        def read(self, path: bytes | None, buf: Any, size: int, offset: int, fip: Any) -> int:
            address = ctypes.cast(buf, ctypes.c_void_p).value or 0
            return operations.read_into(fip.contents.fh, address, size, offset)

    FastFileFUSE(
        operations,
        str(config.mountpoint),
        foreground=True,
        ro=True,
        allow_other=True,
        default_permissions=True,
        fsname=f"{FSNAME}:{os.getpid()}:{config.label}",
        subtype=FSNAME,
        kernel_cache=True,
        entry_timeout=ATTR_TIMEOUT_SECONDS,
        attr_timeout=ATTR_TIMEOUT_SECONDS,
        negative_timeout=ATTR_TIMEOUT_SECONDS,
    )
    return 0


def main() -> NoReturn:
    """Entry point of the file system process (see the module docstring)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s fastfile %(message)s")
    _keep_freed_memory()
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # stdout is the protocol channel: keep stray prints off it
    try:
        code = serve(MountConfig.decode(sys.stdin.buffer.readline()), out)
    except EmulatorError as exc:
        _report(out, StartError.from_exception(exc))
        code = 2
    except Exception:
        log.exception("the FastFile file system failed")
        code = 3
    sys.stderr.flush()
    # Read-ahead threads may be stuck in a slow fetch: do not wait for them.
    os._exit(code)


if __name__ == "__main__":
    main()
