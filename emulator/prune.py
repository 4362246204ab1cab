"""Removing what dead emulator runs left behind (after a SIGKILL of the emulator, say).

Every container, network and work dir records the pid of the emulator process that made it; a
resource is a leftover when that process is gone. Resources of live emulators, whatever their
state directory, are never touched. Jobs of the store whose emulator died are recorded Failed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from emulator.container import DockerEngine
from emulator.store import JobStore, process_alive

WORK_DIR_PREFIX = "sagemaker-emulator-"
OWNER_FILE = "owner.pid"
# A work dir without an owner file is a leftover only once it is older than this: its maker
# may be between creating it and writing the file.
UNOWNED_GRACE_SECONDS = 60.0


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
    from emulator.channels.fastfile import find_stale_mounts, force_unmount

    engine = DockerEngine()
    try:
        removed = engine.remove_orphans(process_alive)
    finally:
        engine.close()
    root = temp_root or Path(tempfile.gettempdir())
    for work_dir in sorted(root.glob(f"{WORK_DIR_PREFIX}*")):
        if work_dir.is_dir() and _orphaned(work_dir):
            for mount in find_stale_mounts(work_dir):
                force_unmount(mount)
                removed.append(f"FUSE mount {mount}")
            shutil.rmtree(work_dir, ignore_errors=True)
            removed.append(f"work dir {work_dir}")
    removed += [f"job record {name} (marked Failed)" for name in store.mark_dead_jobs_failed()]
    return removed
