"""The library's verbs. The CLI (and the server) call only these, so whatever `emulator run`
does, ``emulator.api.run`` does, returning the same DescribeTrainingJob-shaped record.

Every verb takes the state directory as ``home`` (default: ``EMULATOR_HOME`` or the user's state
dir) and raises the ``EmulatorError`` family for what the user must fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator.errors import EmulatorError
from emulator.state.store import JobStore, process_alive
from emulator.state.tags import JobTags

if TYPE_CHECKING:
    from emulator.request.spec import JobSpec
    from emulator.run.job import TrainingJob
    from emulator.run.options import RunOptions
    from emulator.submit.options import SubmitOptions, SubmitResult

# The job runner (docker, boto3), the validator (botocore's model) and prune (docker) are
# imported by the verbs that use them: `emulator list` or `--version` never pays for them.

RUNNING_STATUSES = ("InProgress", "Stopping")

__all__ = [
    "add_tags",
    "create",
    "delete_tags",
    "describe",
    "list_jobs",
    "list_tags",
    "logs",
    "prune",
    "run",
    "stop",
    "submit",
    "validate",
]


def run(request: dict[str, Any] | JobSpec, options: RunOptions | None = None) -> dict[str, Any]:
    """Run a CreateTrainingJob request to its end; return its DescribeTrainingJob record.

    A job that fails is a result (status Failed, FailureReason); an EmulatorError is raised
    for what must be fixed first (an invalid request, no engine, a missing image or data).
    KeyboardInterrupt stops the job, records it Stopped, cleans up and propagates."""
    from emulator.run.job import run_training_job

    return run_training_job(request, options)


def create(request: dict[str, Any] | JobSpec, options: RunOptions | None = None) -> TrainingJob:
    """Register a job as CreateTrainingJob does (InProgress, Starting) and return it unrun:
    ``describe`` shows it at once, ``stop`` stops it before or while it runs, and its
    ``run()`` (in any thread) runs it to its end and returns the record, as ``run`` does.

    Raises RequestInvalid (every problem) or JobExists (a taken name) before anything is
    recorded; what the preflight refuses later (a missing image or data) makes the job Failed
    with a ClientError reason, as in SageMaker."""
    from emulator.run.job import register_training_job

    return register_training_job(request, options)


def submit(request: dict[str, Any], options: SubmitOptions | None = None) -> SubmitResult:
    """Send a CreateTrainingJob request to SageMaker, as ``run`` would run it locally.

    Validated with ``run``'s rules; what runs only locally is refused (SubmitRefused) before
    anything is uploaded; local data is uploaded under ``options.staging`` (content-addressed)
    and the request rewritten; with ``options.wait`` the job is followed to its end (status
    transitions and log lines to ``options.notice`` / ``options.log_sink``) and its last
    Describe record returned in the result. ``options.dry_run`` uploads and sends nothing."""
    from emulator.submit.job import submit_job
    from emulator.submit.options import SubmitOptions

    return submit_job(request, options or SubmitOptions())


def validate(request: object) -> list[str]:
    """Every problem of a CreateTrainingJob request, each ``Path.To.Field: what; fix`` (empty
    when it is valid). Nothing is run or checked on the machine."""
    from emulator.request.validation import validate_request

    return validate_request(request)


def describe(name: str, *, home: Path | None = None) -> dict[str, Any]:
    """The job's DescribeTrainingJob record (JobNotFound when there is none)."""
    return JobStore(home).get(name)


def list_jobs(*, home: Path | None = None) -> list[dict[str, Any]]:
    """Every job's record, newest first."""
    return JobStore(home).all_jobs()


def stop(name: str, *, home: Path | None = None) -> None:
    """Ask a running job to stop, as StopTrainingJob does: its emulator sends SIGTERM, waits
    the grace period, then SIGKILL, and records it Stopped with its artifacts packed."""
    store = JobStore(home)
    status = store.get(name)["TrainingJobStatus"]
    if status not in RUNNING_STATUSES:
        raise EmulatorError(f"Training job {name!r} is not running (status {status})")
    pid = store.owner_pid(name)
    if not process_alive(pid):  # nothing would ever act on the request
        raise EmulatorError(
            f"the emulator process running training job {name!r} (pid {pid}) is gone; "
            "run `emulator prune` to record the job Failed and remove its leftovers"
        )
    store.request_stop(name)


def prune(*, home: Path | None = None) -> list[str]:
    """Remove what dead emulator runs left behind (containers, networks, work dirs, FastFile
    mounts and their processes) and record their jobs Failed; return what was removed. Live
    emulators' resources are never touched."""
    from emulator.cleanup.prune import prune_leftovers

    return prune_leftovers(JobStore(home))


def logs(name: str, *, host: str | None = None, home: Path | None = None) -> Iterator[str]:
    """The lines a job's containers wrote, host by host (only ``host`` when given), each
    prefixed ``[algo-N] `` when the job has several hosts."""
    store = JobStore(home)
    store.get(name)  # JobNotFound for a job the store does not know
    hosts = _hosts_with_logs(store, name)
    if host is not None and host not in hosts:
        raise EmulatorError(f"Training job {name!r} has no host {host!r} (it has {hosts})")
    for current in [host] if host is not None else hosts:
        path = store.log_path(name, current)
        prefix = f"[{current}] " if len(hosts) > 1 else ""
        with open(path, encoding="utf-8", errors="replace", newline="\n") as lines:
            for line in lines:
                yield prefix + line.rstrip("\n")


def _hosts_with_logs(store: JobStore, name: str) -> list[str]:
    """The job's hosts in order (algo-2 before algo-10): each has a log file from its start."""
    found = [path.stem for path in store.job_dir(name).glob("algo-*.log")]
    return sorted(found, key=lambda host: (len(host), host))


def list_tags(name: str, *, home: Path | None = None) -> dict[str, str]:
    """The job's tags (those of its request, then AddTags/DeleteTags), in the order set."""
    store = JobStore(home)
    store.get(name)
    return JobTags(store).get(name)


def add_tags(name: str, new: dict[str, str], *, home: Path | None = None) -> None:
    """Set tags on the job (an existing key gets the new value)."""
    store = JobStore(home)
    store.get(name)
    JobTags(store).add(name, new)


def delete_tags(name: str, keys: list[str], *, home: Path | None = None) -> None:
    """Remove the job's tags of these keys (unknown keys are ignored, as in SageMaker)."""
    store = JobStore(home)
    store.get(name)
    JobTags(store).delete(name, keys)
