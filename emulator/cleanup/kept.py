"""Removing what kept jobs hold (``emulator rm NAME``, ``emulator prune --kept``).

A kept job (``emulator run --keep``, run/kept.py) holds its exited host containers and its
work dir (every host's /opt/ml tree, root-owned files included: removed through the engine as
``remove_work_dir`` does). Removing them clears the job's kept flag; its record, logs and
metrics stay, as the history of the job (`emulator describe` still shows it).

A job still running is refused, and so is one with a post-mortem shell open. ``prune_kept``
also finds kept containers and work dirs the store no longer names (a record deleted, another
state dir's), by their label and marker, of emulators that are gone.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from emulator.cleanup.prune import release_mounts
from emulator.engine import DockerEngine
from emulator.engine.kept import KeptContainer, kept_containers, open_shells, remove_kept_container
from emulator.errors import EmulatorError, EnvironmentProblem, JobNotFound
from emulator.run.kept import NotKept, kept_work_dir
from emulator.run.workdir import kept_marker, owner_gone, remove_work_dir, work_dirs
from emulator.state.store import TERMINAL_STATUSES, JobStore, process_alive


def remove_kept(store: JobStore, name: str) -> list[str]:
    """Remove kept job ``name``'s containers and work dir and clear its kept flag; return
    what was removed. Refused (EmulatorError) while the job runs or a shell is open in it."""
    work_dir = kept_work_dir(store, name)
    _check_not_running(store, name)
    engine = DockerEngine()
    try:
        shells = [(shell, pid) for shell, pid in open_shells(engine, name) if _alive(pid)]
        if shells:
            shell, pid = shells[0]
            raise EmulatorError(
                f"a shell is open in kept job {name!r} (container {shell}, emulator pid {pid}): "
                "exit it first"
            )
        containers = [c for c in kept_containers(engine, name) if c.work_dir == work_dir]
        removed = _remove(engine, containers, work_dir, name)
    finally:
        engine.close()
    store.forget_kept(name)
    return removed


def prune_kept(
    store: JobStore, temp_root: Path | None = None, notice: Callable[[str], None] | None = None
) -> list[str]:
    """Remove every kept job's resources: the store's kept jobs (one still running, or with a
    shell open, is left alone and named in a ``notice``), then kept containers and work dirs
    (in the temp dir) of emulators that are gone which no state dir flags kept any more.
    Returns what was removed."""
    say = notice or _to_stderr
    removed: list[str] = []
    for name in store.kept_jobs():
        try:
            removed += [f"{line} (job {name})" for line in remove_kept(store, name)]
        except JobNotFound:
            store.forget_kept(name)  # its record went: the flag alone holds nothing
        except NotKept:
            continue  # removed meanwhile (another `emulator rm`)
        except EmulatorError as exc:
            say(f"kept job {name} left as it is: {exc}")
    engine = DockerEngine()
    try:
        groups: dict[Path, list[KeptContainer]] = {
            d: [] for d in work_dirs(temp_root) if kept_marker(d) is not None and owner_gone(d)
        }
        for container in kept_containers(engine):
            if not _alive(container.owner):
                groups.setdefault(container.work_dir, []).append(container)
        for work_dir, containers in groups.items():
            job = containers[0].job if containers else ""
            job = (kept_marker(work_dir) or {}).get("job") or job
            holder = _flagged_by(store, job, work_dir)
            if holder is not None:
                if holder != store.home:
                    say(f"kept job {job} left as it is: the state dir {holder} keeps it")
                continue
            removed += [
                f"{line} (job {job})" for line in _remove(engine, containers, work_dir, job)
            ]
    finally:
        engine.close()
    return removed


def _flagged_by(store: JobStore, job: str, work_dir: Path) -> Path | None:
    """The state dir that still flags ``job`` kept with ``work_dir``, if any: this one (a job
    left alone above), or the one the work dir's marker names."""
    homes = [store.home]
    home = (kept_marker(work_dir) or {}).get("home")
    if home and Path(home) != store.home and (Path(home) / "jobs.sqlite3").is_file():
        homes.append(Path(home))
    for candidate in homes:
        try:
            flagged = JobStore(candidate).kept_jobs()
        except EmulatorError:
            continue  # a state dir that cannot be read flags nothing we can honour
        if flagged.get(job) == work_dir:
            return candidate
    return None


def _remove(
    engine: DockerEngine, containers: list[KeptContainer], work_dir: Path, job: str
) -> list[str]:
    """Remove ``containers``, then ``work_dir`` (its FastFile mounts first, should a killed
    emulator have left any). EnvironmentProblem when the work dir cannot be removed."""
    removed = [f"container {c.name}" for c in containers if remove_kept_container(engine, c)]
    if not (work_dir.exists() or work_dir.is_symlink()) or not work_dir.is_absolute():
        return removed
    removed += release_mounts(work_dir)
    problems: list[str] = []
    if not remove_work_dir(work_dir, job=job or None, notice=problems.append, engine=engine):
        raise EnvironmentProblem("; ".join(problems) or f"Could not remove {work_dir}")
    return [*removed, f"work dir {work_dir}"]


def _check_not_running(store: JobStore, name: str) -> None:
    status = store.get(name).get("TrainingJobStatus")
    if status not in TERMINAL_STATUSES and process_alive(store.owner_pid(name)):
        raise EmulatorError(
            f"Training job {name!r} is still running (status {status}): stop it first "
            f"(`emulator stop {name}`), then remove what it kept"
        )


def _alive(pid: int | None) -> bool:
    return pid is not None and process_alive(pid)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)
