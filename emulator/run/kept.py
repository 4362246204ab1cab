"""Keeping a job's containers and work dir (``RunOptions.keep``, ``emulator run --keep``).

From the moment its work dir exists, a kept job is flagged three ways, so that nothing
removes its resources by mistake however it ends (even when its emulator is killed):

    the store     ``JobStore.set_kept``: `emulator list` shows it, `rm` / `shell` find it
    the work dir  ``workdir.mark_kept``: `prune` does not take it for an orphan
    containers    ``LABEL_KEPT`` (the work dir): the reaper does not remove them

Everything else goes as for any job: the network, FastFile mounts and their processes, the
FIFO feeders. The record and artifacts are written as always.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from emulator.errors import EmulatorError
from emulator.run.hosts import JobHosts, resource_name
from emulator.run.workdir import mark_kept
from emulator.state.store import JobStore


class NotKept(EmulatorError):
    """The job was not run with --keep (or its kept resources were removed already)."""


def kept_work_dir(store: JobStore, name: str) -> Path:
    """The work dir of kept job ``name``; JobNotFound or NotKept otherwise."""
    record = store.get(name)
    work_dir = store.kept_jobs().get(name)
    if work_dir is None:
        raise NotKept(
            f"Training job {name!r} (status {record.get('TrainingJobStatus')}) kept no "
            "containers or work dir: it was not run with --keep (or `emulator rm` removed "
            "them); rerun it with `emulator run ... --keep` to look inside it after it ends"
        )
    return work_dir


def keep_job(
    store: JobStore, job: str, work_dir: Path, hosts: JobHosts, notice: Callable[[str], None]
) -> Callable[[], None]:
    """Flag ``job``, its ``work_dir`` and (when they are made) its ``hosts``' containers as
    kept, before any container exists; returns what the cleanup calls instead of removing the
    work dir: the notice of what was kept."""
    work_dir = work_dir.absolute()  # `rm` and `shell` may run from another directory
    mark_kept(work_dir, job, store.home.absolute())
    store.set_kept(job, work_dir)
    hosts.keep = work_dir

    def announce() -> None:
        name = resource_name(job, work_dir)
        notice(kept_notice(job, work_dir, [f"{name}-{c.host}" for c in hosts.containers]))

    return announce


def kept_notice(job: str, work_dir: Path, containers: list[str]) -> str:
    """What a kept job left, and how to look inside and remove it."""
    what = (
        f"the exited container(s) {', '.join(containers)} and "
        if containers
        else "no container (the job ended before they were made), only "
    )
    return (
        f"Kept (--keep): {what}the work dir {work_dir} (every host's /opt/ml tree). Look "
        f"inside with `emulator shell {job} [--host algo-N]`; remove them with `emulator rm "
        f"{job}` (every kept job's: `emulator prune --kept`)."
    )
