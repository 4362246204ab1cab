"""FastFile input mode, host side: mount a channel read-only for the life of a with-block.

``FastFileMount`` mounts one channel (a ``DataSourceSpec`` plus the host's already-sharded
``Entry`` list) on a host directory; the job runner bind-mounts that directory read-only at
``/opt/ml/input/data/<channel>``. The file system itself runs in its own process
(``emulator.stage.fastfile.server``), which this module starts, waits for and stops; the two
talk through ``emulator.stage.fastfile.protocol``.

The block cache counters of a running mount are readable across the process boundary
(``FastFileMount.stats()``), for benchmarks and tests.

Mounts are tagged in /proc/self/mountinfo (fstype ``fuse.emulator-fastfile``, source
``emulator-fastfile:<pid>:<label>``) so ``find_stale_mounts`` can tell mounts whose server is
gone, for ``emulator prune``. Reading the mount table, unmounting and telling FastFile mounts
and servers apart live in ``emulator.stage.fastfile.mounts`` (its names are re-exported here).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from ctypes.util import find_library
from pathlib import Path
from types import TracebackType
from typing import IO

from emulator.config import S3Settings
from emulator.errors import EnvironmentProblem
from emulator.request.spec import DataSourceSpec
from emulator.stage.fastfile.blockcache import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CACHE_BYTES,
    DEFAULT_FETCH_WORKERS,
    DEFAULT_READAHEAD_BLOCKS,
)
from emulator.stage.fastfile.mounts import (
    FSNAME,
    FSTYPE,
    SERVER_MODULE,
    MountRecord,
    find_stale_mounts,
    force_unmount,
    is_mounted,
    read_mounts,
    unmount,
)
from emulator.stage.fastfile.preflight import mount_failure_hint
from emulator.stage.fastfile.protocol import (
    STATS_XATTR,
    MountConfig,
    Ready,
    StartError,
    decode_stats,
    parse_report,
)
from emulator.storage.base import Entry

# The mount-table names come from emulator.stage.fastfile.mounts and stay importable from here.
__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_CACHE_BYTES",
    "FSNAME",
    "FSTYPE",
    "FastFileMount",
    "MountRecord",
    "find_stale_mounts",
    "force_unmount",
    "is_mounted",
    "read_mounts",
]

MOUNT_TIMEOUT_SECONDS = 30.0
EXIT_TIMEOUT_SECONDS = 10.0
# Kernel read-ahead for the mount (root only, best effort): Linux defaults to 128 KiB,
# which splits sequential reads into many small FUSE requests.
KERNEL_READAHEAD_KB = 4096
# Where the emulator package lives: the child gets it on its PYTHONPATH when this interpreter
# would not find it there by itself (a source checkout), so it runs this very code.
PACKAGE_ROOT = Path(__file__).resolve().parents[3]


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
        self.cache_bytes = cache_bytes
        self.block_size = block_size
        self.readahead_blocks = readahead_blocks
        self.fetch_workers = fetch_workers
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
        return decode_stats(os.getxattr(self.mountpoint, STATS_XATTR))

    def config(self) -> MountConfig:
        """What the file system process is told (see ``protocol``)."""
        return MountConfig(
            data_source=self.data_source,
            s3_settings=self.s3_settings,
            entries=tuple(self.entries),
            mountpoint=self.mountpoint,
            label=self.label,
            cache_bytes=self.cache_bytes,
            block_size=self.block_size,
            readahead_blocks=self.readahead_blocks,
            fetch_workers=self.fetch_workers,
        )

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
            [sys.executable, "-m", SERVER_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=_child_environment(),
            start_new_session=True,
        )
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(self.config().encode())
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child died at once: _await_ready reports why

    def _await_ready(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], self.timeout)
        line = proc.stdout.readline() if ready else b""
        proc.stdout.close()  # the child says one line only
        report = parse_report(line)
        if isinstance(report, Ready) and is_mounted(self.mountpoint):
            os.stat(self.mountpoint)  # returns once the kernel finished FUSE_INIT
            return
        if isinstance(report, StartError):
            raise report.exception()
        if not ready:
            raise EnvironmentProblem(
                f"the FastFile mount at {self.mountpoint} was not ready after {self.timeout:.0f}"
                f" s{self._log_tail()}"
            )
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=EXIT_TIMEOUT_SECONDS)
        raise EnvironmentProblem(
            f"the FastFile mount at {self.mountpoint} failed (exit code {proc.returncode})"
            f"{self._log_tail()}{mount_failure_hint(self._log_tail())}"
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
    root = str(PACKAGE_ROOT)
    if root not in sys.path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


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
