"""Removing what dead emulator runs left behind (after a SIGKILL of the emulator, say).

Every container, network and work dir records the pid of the emulator process that made it; a
resource is a leftover when that process is gone. Resources of live emulators, whatever their
state directory, are never touched. Jobs of the store whose emulator died are recorded Failed.

Order: containers first (they hold the FastFile mounts and the FIFOs), then networks, then each
dead work dir in the temp dir: its FastFile mounts are detached (a file system process that
outlived its emulator is stopped first: SIGTERM, then SIGKILL), then the directory is removed.
Last, FastFile mounts anywhere whose file system process is gone are detached (work dirs
elsewhere, ``RunOptions.work_root``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from emulator.channels.mounts import fastfile_mounts, find_stale_mounts, force_unmount, server_pid
from emulator.container import DockerEngine
from emulator.store import JobStore, process_alive

WORK_DIR_PREFIX = "sagemaker-emulator-"
OWNER_FILE = "owner.pid"
# A work dir without an owner file is a leftover only once it is older than this: its maker
# may be between creating it and writing the file.
UNOWNED_GRACE_SECONDS = 60.0
SERVER_EXIT_SECONDS = 5.0


def claim(work_dir: Path) -> None:
    """Mark ``work_dir`` as this process's, for ``prune``."""
    (work_dir / OWNER_FILE).write_text(str(os.getpid()))


def _orphaned(work_dir: Path) -> bool:
    try:
        pid = int((work_dir / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return time.time() - work_dir.stat().st_mtime > UNOWNED_GRACE_SECONDS
    return not process_alive(pid)


def prune_leftovers(store: JobStore, temp_root: Path | None = None) -> list[str]:
    """Remove the leftovers of every dead emulator process; return what was removed."""
    engine = DockerEngine()
    try:
        removed = engine.remove_orphans(process_alive)
    finally:
        engine.close()
    root = temp_root or Path(tempfile.gettempdir())
    for work_dir in sorted(root.glob(f"{WORK_DIR_PREFIX}*")):
        if work_dir.is_dir() and _orphaned(work_dir):
            removed += _release_mounts(work_dir)
            shutil.rmtree(work_dir, ignore_errors=True)
            removed.append(f"work dir {work_dir}")
    removed += _release_stale_mounts()
    removed += [f"job record {name} (marked Failed)" for name in store.mark_dead_jobs_failed()]
    return removed


def _release_stale_mounts() -> list[str]:
    """Detach FastFile mounts anywhere whose server is gone (work dirs outside the temp dir):
    they serve nobody, every access fails with ENOTCONN."""
    removed = []
    for mount in find_stale_mounts(Path("/")):
        force_unmount(mount)
        removed.append(f"FUSE mount {mount} (its server was gone)")
    return removed


def _release_mounts(work_dir: Path) -> list[str]:
    """Stop the FastFile servers still serving mounts below ``work_dir``, detach every such
    mount (dead server or not), deepest first."""
    mounts = fastfile_mounts(work_dir)
    removed = []
    for record in sorted(mounts, key=lambda r: len(r.mountpoint.parts), reverse=True):
        pid = fastfile_server(record.source)
        if pid is not None:
            stop_process(pid)
            removed.append(f"FastFile server process {pid}")
        force_unmount(record.mountpoint)
        removed.append(f"FUSE mount {record.mountpoint}")
    return removed


def fastfile_server(source: str) -> int | None:
    """The pid of the live FastFile process a mount's source names
    (``emulator-fastfile:<pid>:<label>``), or None when it is gone (a zombie is gone)."""
    pid = server_pid(source)
    return pid if pid is not None and not _gone(pid) else None


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie counts: it serves nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def stop_process(pid: int) -> None:
    """SIGTERM (and SIGCONT, should it be stopped), then SIGKILL after SERVER_EXIT_SECONDS;
    reaped when it is our child."""
    for numbers in ((signal.SIGTERM, signal.SIGCONT), (signal.SIGKILL,)):
        for number in numbers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, number)
        deadline = time.monotonic() + SERVER_EXIT_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if _gone(pid):
                return
            time.sleep(0.05)
