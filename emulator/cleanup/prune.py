"""Removing what dead emulator runs left behind (after a SIGKILL of the emulator, say).

Every container, network and work dir records the pid of the emulator process that made it; a
resource is a leftover when that process is gone. Resources of live emulators, whatever their
state directory, are never touched. Jobs of the store whose emulator died are recorded Failed.

Kept jobs (``emulator run --keep``) are not leftovers: their containers and work dirs stay
(only ``prune_kept``, `emulator prune --kept`, removes them; cleanup/kept.py). What their dead
emulator left besides (FastFile mounts and processes, the network) is removed as any other's.

Order: containers first (they hold the FastFile mounts and the FIFOs), then networks, then each
dead work dir in the temp dir: its FastFile mounts are detached (a file system process that
outlived its emulator is stopped first: SIGTERM, then SIGKILL), then the directory is removed.
Then FastFile mounts anywhere whose file system process is gone are detached (work dirs
elsewhere, ``RunOptions.work_root``).

The emulator's temporaries in local output and checkpoint folders (a half-packed
``.packing-<pid>-<hex>`` after a SIGKILL while the model was packed, ``.replacing-*``,
``.partial-*``: ``storage.local_folder``) are removed when the pid in their name is dead. The
folders searched: those a dead work dir noted (``finish.publish.noted_folders``: the output
folder, resolved as the job used it) and the absolute local S3OutputPath and
CheckpointConfig.S3Uri of the store's jobs whose emulator died. Nothing else in those folders
is touched.

Work dirs hold files a root training container wrote (root-owned): ``remove_work_dir`` removes
what the user running the emulator cannot through a root container of the job's image
(``DockerEngine.remove_as_root``; ``claim`` records the image for ``prune``), and says how to
remove what is still left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from emulator.engine import DockerEngine
from emulator.errors import EmulatorError, JobNotFound
from emulator.finish.publish import noted_folders
from emulator.run.workdir import kept_marker, orphaned, owner_gone, remove_work_dir, work_dirs
from emulator.stage.fastfile.mounts import (
    fastfile_mounts,
    find_stale_mounts,
    force_unmount,
    server_pid,
)
from emulator.state.store import JobStore, process_alive
from emulator.storage import is_local_uri
from emulator.storage.local import local_path
from emulator.storage.local_folder import remove_dead_temporaries, temporary_owner

SERVER_EXIT_SECONDS = 5.0


def prune_leftovers(store: JobStore, temp_root: Path | None = None) -> list[str]:
    """Remove the leftovers of every dead emulator process; return what was removed."""
    dead_jobs = [name for name, pid in store.running_jobs() if not process_alive(pid)]
    engine = DockerEngine()
    try:
        removed = engine.remove_orphans(process_alive)
    finally:
        engine.close()
    for work_dir in work_dirs(temp_root):
        if orphaned(work_dir):
            removed += release_mounts(work_dir)
            removed += _remove_temporaries(noted_folders(work_dir))
            if remove_work_dir(work_dir):
                removed.append(f"work dir {work_dir}")
        elif kept_marker(work_dir) is not None and owner_gone(work_dir):
            removed += release_mounts(work_dir)  # the dir stays, its FastFile mounts go
    removed += _release_stale_mounts()
    removed += _remove_temporaries(_recorded_folders(store, dead_jobs))
    removed += [f"job record {name} (marked Failed)" for name in store.mark_dead_jobs_failed()]
    return removed


def _remove_temporaries(folders: Iterable[Path]) -> list[str]:
    """Remove the temporaries of dead emulators below each folder."""
    removed = []
    for folder in dict.fromkeys(folders):
        gone, failed = remove_dead_temporaries(folder, process_alive)
        removed += [f"temporary {path} (of pid {temporary_owner(path.name)})" for path in gone]
        for failure in failed:
            print(f"Could not remove the temporary {failure}; remove it by hand", file=sys.stderr)
    return removed


def _recorded_folders(store: JobStore, names: list[str]) -> list[Path]:
    """The local output and checkpoint folders of jobs the store records, when their URIs are
    absolute (a relative one was resolved against a request's folder the record does not
    keep; the work dir's note names the output folder then)."""
    folders = []
    for name in names:
        try:
            record = store.get(name)
        except JobNotFound:
            continue  # removed meanwhile
        output = record.get("OutputDataConfig", {}).get("S3OutputPath")
        checkpoint = record.get("CheckpointConfig", {}).get("S3Uri")
        for uri, below in ((output, f"{name}/output"), (checkpoint, "")):
            path = _absolute_local(uri)
            if path is not None:
                folders.append(path / below if below else path)
    return folders


def _absolute_local(uri: object) -> Path | None:
    """The folder a local, absolute URI (a path, ``~/...`` or file://) names; else None."""
    if not isinstance(uri, str) or not is_local_uri(uri):
        return None
    if not (uri.startswith("file://") or os.path.isabs(os.path.expanduser(uri))):
        return None
    try:
        return local_path(uri)
    except EmulatorError:
        return None


def _release_stale_mounts() -> list[str]:
    """Detach FastFile mounts anywhere whose server is gone (work dirs outside the temp dir):
    they serve nobody, every access fails with ENOTCONN."""
    removed = []
    for mount in find_stale_mounts(Path("/")):
        force_unmount(mount)
        removed.append(f"FUSE mount {mount} (its server was gone)")
    return removed


def release_mounts(work_dir: Path) -> list[str]:
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
