"""FastFile input mode, host side: a read-only FUSE view of a channel's objects.

``FastFileMount`` mounts one channel (a ``Source`` rebuilt from its ``DataSourceSpec`` plus the
host's already-sharded ``Entry`` list) on a host directory; the job runner bind-mounts that
directory read-only at ``/opt/ml/input/data/<channel>``. Listing is the only up-front cost:
the tree and the sizes come from the entries, bytes are fetched on demand through
``Source.read_range`` into a bounded block cache with sequential read-ahead (``blockcache``),
and copied from the cached blocks straight into libfuse's reply buffer (``read_into``). Files
opened in listing order get the next file's first block fetched ahead.

Process model: the file system runs in its own process (``python -c "from
emulator.stage.fastfile.mount import main; main()"``), so FUSE's signal handling and threads
stay out of the emulator, and a crash of the file system cannot hang it. The parent sends
the configuration as one JSON line on the child's stdin and keeps that pipe open as a
lifeline: when it closes (the emulator exited or died) the child unmounts and exits. The
child answers ``ready`` on stdout once the kernel has mounted it, or a structured error.
Its stderr is its log. The child rebuilds the Source with ``open_source(DataSourceSpec,
S3Settings)``: the job's S3 settings travel in the JSON configuration (``s3_settings``; null:
from the environment, which the child inherits, as do credentials a profile does not give).

The block cache counters of a running mount are readable as JSON in the extended attribute
``user.emulator.fastfile.stats`` of its root (``FastFileMount.stats()``), for benchmarks and
tests across the process boundary.

Mounts are tagged in /proc/self/mountinfo (fstype ``fuse.emulator-fastfile``, source
``emulator-fastfile:<pid>:<label>``) so ``find_stale_mounts`` can tell mounts whose server is
gone, for ``emulator prune``. Reading the mount table, unmounting and telling FastFile mounts
and servers apart live in ``emulator.stage.fastfile.mounts`` (its names are re-exported here).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from ctypes.util import find_library
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NoReturn

from emulator.config import S3Settings
from emulator.errors import EmulatorError, EnvironmentProblem, SourceError
from emulator.request.spec import DataSourceSpec
from emulator.stage.fastfile.blockcache import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CACHE_BYTES,
    DEFAULT_FETCH_WORKERS,
    DEFAULT_READAHEAD_BLOCKS,
    BlockCache,
    ReadHandle,
)
from emulator.stage.fastfile.mounts import (
    FSNAME,
    FSTYPE,
    MountRecord,
    find_stale_mounts,
    force_unmount,
    is_mounted,
    read_mounts,
    unmount,
)
from emulator.storage.base import Entry, Source

# The mount-table names come from emulator.stage.fastfile.mounts and stay importable from here.
__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_CACHE_BYTES",
    "FSNAME",
    "FSTYPE",
    "FastFileMount",
    "MountRecord",
    "check_fuse_available",
    "find_stale_mounts",
    "force_unmount",
    "is_mounted",
    "read_mounts",
]

STATS_XATTR = "user.emulator.fastfile.stats"
MOUNT_TIMEOUT_SECONDS = 30.0
EXIT_TIMEOUT_SECONDS = 10.0
# Kernel read-ahead for the mount (root only, best effort): Linux defaults to 128 KiB,
# which splits sequential reads into many small FUSE requests.
KERNEL_READAHEAD_KB = 4096
FILE_BLKSIZE = 1024 * 1024  # st_blksize: sets the buffer size of buffered readers (Python io)
ATTR_TIMEOUT_SECONDS = 86400.0  # the view never changes while mounted
FUSE_CONF = Path("/etc/fuse.conf")
FUSE_DEVICE = Path("/dev/fuse")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# Imported rather than run with -m: the package may import this module first, and runpy
# would then execute it twice. argv[1] is PACKAGE_ROOT, added to sys.path only when missing
# (a source checkout) so the child runs this very code. The module name in the command line
# (mounts.SERVER_MODULE) marks our processes for find_stale_mounts.
CHILD_COMMAND = (
    "import sys; root = sys.argv[1]; root in sys.path or sys.path.insert(0, root); "
    "from emulator.stage.fastfile.mount import main; main()"
)

log = logging.getLogger("emulator.fastfile")


# --------------------------------------------------------------------------- environment


def check_fuse_available() -> None:
    """Raise EnvironmentProblem saying why FastFile cannot work here and how to fix it.

    The device must exist and open read/write for this process (a container without
    ``--device /dev/fuse``, a nodev /dev or a device cgroup all fail here); the fuse3 tools,
    libfuse3 and mfusepy must be installed; a non-root user needs ``user_allow_other``."""
    _check_fuse_device()
    if shutil.which("fusermount3") is None:
        raise EnvironmentProblem(
            "FastFile input mode needs the fuse3 tools (fusermount3 was not found on PATH): "
            "install them, e.g. `apt-get install fuse3`, or use InputMode File"
        )
    if find_library("fuse3") is None:
        raise EnvironmentProblem(
            "FastFile input mode needs libfuse3, which was not found: install it, e.g. "
            "`apt-get install fuse3` (libfuse3-3), or use InputMode File"
        )
    import importlib.util

    if importlib.util.find_spec("mfusepy") is None:
        raise EnvironmentProblem(
            "FastFile input mode needs the Python package mfusepy: `pip install mfusepy`"
        )
    if os.geteuid() != 0 and not _user_allow_other():
        raise EnvironmentProblem(
            "FastFile mounts use allow_other so the container's user can read them; as a "
            f"non-root user that needs a line `user_allow_other` in {FUSE_CONF} "
            "(as root: echo user_allow_other >> /etc/fuse.conf), or run as root"
        )


def _check_fuse_device() -> None:
    try:
        mode = FUSE_DEVICE.stat().st_mode
    except FileNotFoundError:
        raise EnvironmentProblem(
            "FastFile input mode needs FUSE, but /dev/fuse does not exist: on a host, load the "
            "module (`modprobe fuse`); inside a container or VM, start it with "
            "`--device /dev/fuse --cap-add SYS_ADMIN`; or use InputMode File"
        ) from None
    if not stat.S_ISCHR(mode):
        raise EnvironmentProblem(
            "FastFile input mode needs FUSE, but /dev/fuse is not a character device: give this "
            "host (or container: `--device /dev/fuse`) the real device, or use InputMode File"
        )
    if not os.access(FUSE_DEVICE, os.R_OK | os.W_OK):
        raise EnvironmentProblem(
            "FastFile input mode needs read/write access to /dev/fuse, which this user does not "
            "have: fix its permissions (usually crw-rw-rw-), run as root, or use InputMode File"
        )
    # access() trusts the permission bits; opening also meets a nodev mount or a container's
    # device cgroup, which refuse the device to root too. Opening alone starts no session.
    try:
        os.close(os.open(FUSE_DEVICE, os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        raise EnvironmentProblem(
            f"FastFile input mode needs FUSE, but opening /dev/fuse failed ({exc.strerror}): "
            "inside a container, start it with `--device /dev/fuse --cap-add SYS_ADMIN`; on a "
            "host, check that /dev is not mounted nodev; or use InputMode File"
        ) from None


def _user_allow_other() -> bool:
    try:
        lines = FUSE_CONF.read_text().splitlines()
    except OSError:
        return False
    return any(line.strip() == "user_allow_other" for line in lines)


# --------------------------------------------------------------------------- parent side


class FastFileMount:
    """A FastFile channel mounted read-only at ``mountpoint`` for the life of a with-block.

    ``__enter__`` starts the file system process and returns once the mount is ready (or
    raises SourceError / EnvironmentProblem); ``__exit__`` always unmounts and reaps the
    process, also on exceptions and KeyboardInterrupt.
    """

    def __init__(
        self,
        data_source: DataSourceSpec,
        entries: Sequence[Entry],
        mountpoint: Path,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        block_size: int = DEFAULT_BLOCK_SIZE,
        readahead_blocks: int = DEFAULT_READAHEAD_BLOCKS,
        fetch_workers: int = DEFAULT_FETCH_WORKERS,
        label: str = "fastfile",
        log_path: Path | None = None,
        timeout: float = MOUNT_TIMEOUT_SECONDS,
        s3_settings: S3Settings | None = None,
    ) -> None:
        if cache_bytes < 2 * block_size:
            raise ValueError(f"cache_bytes must be at least two blocks ({2 * block_size} bytes)")
        self.data_source = data_source
        self.s3_settings = s3_settings
        self.entries = list(entries)
        self.mountpoint = Path(os.path.abspath(mountpoint))
        self.label = re.sub(r"[^A-Za-z0-9._-]", "_", label)[:64] or "fastfile"
        self.log_path = log_path
        self.timeout = timeout
        self._tuning = {
            "cache_bytes": cache_bytes,
            "block_size": block_size,
            "readahead_blocks": readahead_blocks,
            "fetch_workers": fetch_workers,
        }
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> FastFileMount:
        self.mount()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.unmount()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def alive(self) -> bool:
        """Whether the file system process still serves the mount."""
        return self._proc is not None and self._proc.poll() is None

    def stats(self) -> dict[str, int]:
        """Block cache counters of the running file system (fetches, hits, ...)."""
        return dict(json.loads(os.getxattr(self.mountpoint, STATS_XATTR)))

    def mount(self) -> None:
        if self._proc is not None:
            raise RuntimeError("already mounted")
        self._prepare_mountpoint()
        try:
            self._start()
            self._await_ready()
        except BaseException:
            self.unmount()
            raise
        _tune_kernel_readahead(self.mountpoint)

    def unmount(self) -> None:
        """Unmount, stop the process, and remove a mount it left behind. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            unmount(self.mountpoint)
        finally:
            try:
                _stop_child(proc)
            finally:
                if is_mounted(self.mountpoint):
                    force_unmount(self.mountpoint)
                if self._log is not None:
                    self._log.close()
                    self._log = None

    def _prepare_mountpoint(self) -> None:
        if is_mounted(self.mountpoint):
            raise EnvironmentProblem(
                f"{self.mountpoint} is already a FUSE mount point; a leftover of an earlier "
                "job? Run `emulator prune`"
            )
        if self.mountpoint.exists() and not self.mountpoint.is_dir():
            raise EnvironmentProblem(f"FastFile mount point {self.mountpoint} is not a directory")
        self.mountpoint.mkdir(parents=True, exist_ok=True)

    def _start(self) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in unmount)
        else:
            self._log = tempfile.TemporaryFile(prefix="fastfile-", suffix=".log")  # noqa: SIM115
        # A new session: a Ctrl-C in the terminal must not kill the FS under a container
        # that is still being stopped; the parent unmounts it explicitly.
        self._proc = subprocess.Popen(
            [sys.executable, "-c", CHILD_COMMAND, str(PACKAGE_ROOT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=_child_environment(),
            start_new_session=True,
        )
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(self._config()).encode() + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child died at once: _await_ready reports why

    def _config(self) -> dict[str, Any]:
        return {
            "data_source": asdict(self.data_source),
            "s3_settings": asdict(self.s3_settings) if self.s3_settings is not None else None,
            "entries": [[e.relative_path, e.location, e.size, e.etag] for e in self.entries],
            "mountpoint": str(self.mountpoint),
            "label": self.label,
            **self._tuning,
        }

    def _await_ready(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], self.timeout)
        line = proc.stdout.readline() if ready else b""
        proc.stdout.close()  # the child says one line only
        if line == b"ready\n" and is_mounted(self.mountpoint):
            os.stat(self.mountpoint)  # returns once the kernel finished FUSE_INIT
            return
        if line.startswith(b"error "):
            raise _child_error(json.loads(line[len(b"error ") :]))
        if not ready:
            raise EnvironmentProblem(
                f"the FastFile mount at {self.mountpoint} was not ready after {self.timeout:.0f}"
                f" s{self._log_tail()}"
            )
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=EXIT_TIMEOUT_SECONDS)
        raise EnvironmentProblem(
            f"the FastFile mount at {self.mountpoint} failed (exit code {proc.returncode})"
            f"{self._log_tail()}{_mount_failure_hint(self._log_tail())}"
        )

    def _log_tail(self, limit: int = 2000) -> str:
        if self._log is None:
            return ""
        fd = self._log.fileno()
        size = os.fstat(fd).st_size
        # pread leaves the shared file offset alone: the child is still writing through it.
        text = os.pread(fd, limit, max(0, size - limit)).decode(errors="replace").strip()
        return f":\n{text}" if text else ""


def _child_environment() -> dict[str, str]:
    env = dict(os.environ)
    # mfusepy prefers libfuse 2 when both are installed; FastFile is built on libfuse 3.
    library = find_library("fuse3")
    if library and "FUSE_LIBRARY_PATH" not in env:
        env["FUSE_LIBRARY_PATH"] = library
    return env


def _child_error(payload: dict[str, str]) -> EmulatorError:
    kind = SourceError if payload.get("kind") == "SourceError" else EnvironmentProblem
    return kind(payload.get("message", "the FastFile file system failed to start"))


def _mount_failure_hint(log_text: str) -> str:
    if "not permitted" in log_text or "Permission denied" in log_text:
        return (
            "\nMounting FUSE file systems is not permitted here: inside a container run it with "
            "`--device /dev/fuse --cap-add SYS_ADMIN` (and no AppArmor mount restriction); as a "
            "non-root user add `user_allow_other` to /etc/fuse.conf"
        )
    return ""


def _stop_child(proc: subprocess.Popen[bytes]) -> None:
    """Close the lifeline (the child unmounts and exits), then escalate to signals."""
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    for send in (None, proc.terminate, proc.kill):
        if send is not None:
            with contextlib.suppress(ProcessLookupError):
                send()
        try:
            proc.wait(timeout=EXIT_TIMEOUT_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue


def _tune_kernel_readahead(mountpoint: Path) -> None:
    """Raise the mount's kernel read-ahead window (needs root; skipped otherwise)."""
    try:
        dev = os.stat(mountpoint).st_dev
        bdi = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
        bdi.write_text(str(KERNEL_READAHEAD_KB))
    except OSError:
        pass


# --------------------------------------------------------------------------- child side


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
            self._handles[handle] = ReadHandle(self.cache, file_id, self.entries[file_id])
            in_order = file_id == self._last_opened + 1
            self._last_opened = file_id
        # A reader going through the files in listing order (shards, a sorted walk) finds
        # the next file's first block fetched while it reads this one.
        following = file_id + 1
        if in_order and following < len(self.entries) and self.entries[following].size:
            self.cache.prefetch(following, self.entries[following], 0)
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
            return json.dumps(self.cache.stats().as_dict()).encode()
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


def _report(stream: IO[bytes], line: str) -> None:
    stream.write(line.encode() + b"\n")
    stream.flush()


def _watch_lifeline(stdin: IO[bytes]) -> None:
    """Block until the parent closes our stdin (or dies), then stop the FUSE loop: SIGTERM
    to the main thread makes libfuse leave its loop and unmount."""
    while stdin.read(65536):
        pass
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)


def _data_source_from_json(spec: dict[str, Any]) -> DataSourceSpec:
    return DataSourceSpec(
        data_type=spec["data_type"],
        uri=spec["uri"],
        distribution=spec["distribution"],
        attribute_names=tuple(spec["attribute_names"]),
        instance_group_names=tuple(spec["instance_group_names"]),
    )


def _s3_settings_from_json(values: dict[str, Any] | None) -> S3Settings | None:
    return None if values is None else S3Settings(**values)


def _warm_up(source: Source) -> None:
    s3 = sys.modules.get("emulator.storage.s3")  # not imported: not an S3 channel
    if s3 is not None and isinstance(source, s3.S3Source):
        with contextlib.suppress(Exception):  # a real problem shows on the first read
            s3.s3_client(source.settings)


def _serve(config: dict[str, Any], out: IO[bytes]) -> int:
    from emulator.storage import open_source

    data_source = _data_source_from_json(config["data_source"])
    entries = [Entry(rel, loc, size, etag) for rel, loc, size, etag in config["entries"]]
    cache = BlockCache(
        open_source(data_source, _s3_settings_from_json(config.get("s3_settings"))),
        block_size=config["block_size"],
        capacity_bytes=config["cache_bytes"],
        readahead_blocks=config["readahead_blocks"],
        fetch_workers=config["fetch_workers"],
    )

    def on_ready() -> None:
        # The lifeline first: if the parent is already gone, the report fails but we still exit.
        threading.Thread(target=_watch_lifeline, args=(sys.stdin.buffer,), daemon=True).start()
        # Make the S3 client (~0.1 s of botocore start-up) while the container starts, not
        # on its first read.
        threading.Thread(target=_warm_up, args=(cache.source,), daemon=True).start()
        with contextlib.suppress(OSError):
            _report(out, "ready")

    operations = FastFileOperations(entries, cache, on_ready)
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
        config["mountpoint"],
        foreground=True,
        ro=True,
        allow_other=True,
        default_permissions=True,
        fsname=f"{FSNAME}:{os.getpid()}:{config['label']}",
        subtype=FSNAME,
        kernel_cache=True,
        entry_timeout=ATTR_TIMEOUT_SECONDS,
        attr_timeout=ATTR_TIMEOUT_SECONDS,
        negative_timeout=ATTR_TIMEOUT_SECONDS,
    )
    return 0


def main() -> NoReturn:
    """Entry point of the file system process (see the module docstring for the protocol)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s fastfile %(message)s")
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # stdout is the protocol channel: keep stray prints off it
    try:
        config = json.loads(sys.stdin.buffer.readline())
        code = _serve(config, out)
    except EmulatorError as exc:
        kind = "SourceError" if isinstance(exc, SourceError) else "EnvironmentProblem"
        _report(out, "error " + json.dumps({"kind": kind, "message": str(exc)}))
        code = 2
    except Exception:
        log.exception("the FastFile file system failed")
        code = 3
    sys.stderr.flush()
    # Read-ahead threads may be stuck in a slow fetch: do not wait for them.
    os._exit(code)


if __name__ == "__main__":
    main()
