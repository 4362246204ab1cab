"""Removing what dead emulator runs left behind (after a SIGKILL of the emulator, say).

A resource is a leftover when it carries the emulator's label (containers, networks) or name
(work dirs) and its job is not running in a live emulator process.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from emulator.container import LABEL_JOB, DockerEngine
from emulator.job import WORK_DIR_PREFIX
from emulator.store import JobStore, process_alive


def prune_leftovers(store: JobStore, temp_root: Path | None = None) -> list[str]:
    """Remove the leftovers of every job not running now; return what was removed."""
    live = {name for name, pid in store.running_jobs() if process_alive(pid)}
    removed: list[str] = []
    engine = DockerEngine()
    try:
        containers, networks = engine.leftovers()
    finally:
        engine.close()
    for container in containers:
        if container.labels.get(LABEL_JOB) not in live:
            container.remove(force=True, v=True)
            removed.append(f"container {container.name}")
    for network in networks:
        if network.attrs.get("Labels", {}).get(LABEL_JOB) not in live:
            network.remove()
            removed.append(f"network {network.name}")
    root = temp_root or Path(tempfile.gettempdir())
    for work_dir in sorted(root.glob(f"{WORK_DIR_PREFIX}*")):
        job = work_dir.name[len(WORK_DIR_PREFIX) :].rsplit("-", 1)[0]
        if job not in live and work_dir.is_dir():
            shutil.rmtree(work_dir, ignore_errors=True)
            removed.append(f"work dir {work_dir}")
    store.mark_dead_jobs_stopped()
    return removed
