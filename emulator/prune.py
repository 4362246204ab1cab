"""Removing what dead emulator runs left behind (after a SIGKILL of the emulator, say).

Every container, network and work dir records the pid of the emulator process that made it; a
resource is a leftover when that process is gone. Resources of live emulators, whatever their
state directory, are never touched. Jobs of the store whose emulator died are recorded Failed.

Order: containers first (they hold the FastFile mounts and the FIFOs), then networks, then each
dead work dir in the temp dir: its FastFile mounts are detached (a file system process that
outlived its emulator is stopped first: SIGTERM, then SIGKILL), then the directory is removed.
Last, FastFile mounts anywhere whose file system process is gone are detached (work dirs
elsewhere, ``RunOptions.work_root``).

Work dirs hold files a root training container wrote (root-owned): ``remove_work_dir`` removes
what the user running the emulator cannot through a root container of the job's image
(``DockerEngine.remove_as_root``; ``claim`` records the image for ``prune``), and says how to
remove what is still left.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator.channels.mounts import fastfile_mounts, find_stale_mounts, force_unmount, server_pid
from emulator.container import DockerEngine
from emulator.errors import EmulatorError
from emulator.store import JobStore, process_alive

WORK_DIR_PREFIX = "sagemaker-emulator-"
OWNER_FILE = "owner.pid"
IMAGE_FILE = "image"  # the job's TrainingImage, for removing root-owned files
# A work dir without an owner file is a leftover only once it is older than this: its maker
# may be between creating it and writing the file.
UNOWNED_GRACE_SECONDS = 60.0
SERVER_EXIT_SECONDS = 5.0


def claim(work_dir: Path, image: str | None = None) -> None:
    """Mark ``work_dir`` as this process's, for ``prune``; record the job's image, with which
    ``prune`` removes root-owned files."""
    if image is not None:
        (work_dir / IMAGE_FILE).write_text(image)
    (work_dir / OWNER_FILE).write_text(str(os.getpid()))


def remove_work_dir(
    work_dir: Path,
    *,
    image: str | None = None,
    job: str | None = None,
    notice: Callable[[str], None] | None = None,
    engine: DockerEngine | None = None,
) -> bool:
    """Remove ``work_dir``; whether it is gone.

    What the user running the emulator cannot delete (root-owned files a root container
    wrote) is removed by a root container of ``image`` (default: the one ``claim`` recorded)
    labelled with ``job`` (default: from the dir's name), through ``engine`` (default: a new
    one), then the removal is retried. What still remains is named in a ``notice`` (default:
    on stderr) with how to remove it."""
    image = image or _recorded_image(work_dir)
    job = job or work_dir.name.removeprefix(WORK_DIR_PREFIX).rpartition("-")[0] or "prune"
    denied: list[BaseException] = []

    def note(_function: Any, _path: Any, exc_info: Any) -> None:
        if isinstance(exc_info[1], OSError) and exc_info[1].errno in (errno.EACCES, errno.EPERM):
            denied.append(exc_info[1])

    shutil.rmtree(work_dir, onerror=note)  # other failures: what remains is checked below
    if not work_dir.exists():
        return True
    if image is not None and (denied or os.geteuid() != 0):
        _remove_as_root(image, work_dir, job, engine)
        shutil.rmtree(work_dir, ignore_errors=True)
        if not work_dir.exists():
            return True
    (notice or _to_stderr)(
        f"Could not remove the work dir {work_dir} (files a root container wrote there are "
        f"owned by root); remove it with `sudo rm -rf {work_dir}`"
    )
    return False


def _recorded_image(work_dir: Path) -> str | None:
    try:
        return (work_dir / IMAGE_FILE).read_text().strip() or None
    except OSError:
        return None


def _remove_as_root(image: str, work_dir: Path, job: str, engine: DockerEngine | None) -> None:
    try:
        if engine is not None:
            engine.remove_as_root(image, work_dir, job)
            return
        own = DockerEngine()
        try:
            own.remove_as_root(image, work_dir, job)
        finally:
            own.close()
    except EmulatorError:
        pass  # no engine: the notice says what is left


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


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
            if remove_work_dir(work_dir):
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
