"""The library's verbs. The CLI (and the server) call only these, so whatever `emulator run`
does, ``emulator.api.run`` does, returning the same DescribeTrainingJob-shaped record.

Every verb takes the state directory as ``home`` (default: ``EMULATOR_HOME`` or the user's state
dir) and raises the ``EmulatorError`` family for what the user must fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator.errors import EmulatorError
from emulator.state.store import JobStore, process_alive
from emulator.state.tags import JobTags

if TYPE_CHECKING:
    from emulator.observe.resources import MetricSample, ResourceUse
    from emulator.request.spec import JobSpec
    from emulator.run.job import TrainingJob
    from emulator.run.options import RunOptions
    from emulator.submit.options import SubmitOptions, SubmitResult

# The job runner (docker, boto3), the validator (botocore's model) and prune (docker) are
# imported by the verbs that use them: `emulator list` or `--version` never pays for them.

RUNNING_STATUSES = ("InProgress", "Stopping")

__all__ = [
    "add_tags",
    "check_engine",
    "create",
    "delete_tags",
    "describe",
    "exec_in_job",
    "kept_jobs",
    "list_jobs",
    "list_tags",
    "logs",
    "metrics",
    "prune",
    "remove_kept",
    "resource_use",
    "run",
    "shell",
    "stop",
    "submit",
    "validate",
]


def check_engine() -> None:
    """Return when the Docker engine (DOCKER_HOST) answers; raise the EmulatorError saying
    why it does not otherwise (no engine, no permission on its socket)."""
    from emulator.engine import DockerEngine

    DockerEngine().close()


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


def prune(*, kept: bool = False, home: Path | None = None) -> list[str]:
    """Remove what dead emulator runs left behind (containers, networks, work dirs, FastFile
    mounts and their processes) and record their jobs Failed; return what was removed. Live
    emulators' resources are never touched, nor what jobs run with --keep kept.

    With ``kept``: remove instead every kept job's containers and work dir (``remove_kept``
    for each; one still running is left alone and named on stderr)."""
    if kept:
        from emulator.cleanup.kept import prune_kept

        return prune_kept(JobStore(home))
    from emulator.cleanup.prune import prune_leftovers

    return prune_leftovers(JobStore(home))


def kept_jobs(*, home: Path | None = None) -> dict[str, Path]:
    """The jobs run with --keep whose containers and work dir are still there: job name ->
    work dir (every host's /opt/ml tree below it), oldest first."""
    return JobStore(home).kept_jobs()


def shell(name: str, *, host: str | None = None, home: Path | None = None) -> int:
    """An interactive shell (bash, else sh) in a NEW container of kept job ``name``'s image,
    with ``host``'s (default: the first host's) /opt/ml tree from the kept work dir and the
    environment its kept container had, on this process's terminal (a TTY when stdin is one,
    else the commands piped in); the container is removed when the shell exits. Returns the
    shell's exit status. A job not run with --keep is refused (EmulatorError)."""
    from emulator.run.postmortem import open_shell

    return open_shell(JobStore(home), name, host)


def remove_kept(name: str, *, home: Path | None = None) -> list[str]:
    """Remove what kept job ``name`` holds (its containers, its work dir, root-owned files
    included) and clear its kept flag; return what was removed. The job's record, logs and
    metrics stay: they are its history. Refused while it runs or a shell is open in it."""
    from emulator.cleanup.kept import remove_kept as remove

    return remove(JobStore(home), name)


def logs(
    name: str, *, host: str | None = None, follow: bool = False, home: Path | None = None
) -> Iterator[str]:
    """The lines a job's containers wrote, host by host (only ``host`` when given), each
    prefixed ``[algo-N] `` when the job has several hosts.

    With ``follow``, from any process: the lines there, then each host's new lines as the
    running job writes them (hosts interleaved as their lines arrive), until the job has
    ended and its last lines are given (at once for a job not running)."""
    store = JobStore(home)
    store.get(name)  # JobNotFound for a job the store does not know
    if follow:
        from emulator.observe.follow import follow_logs, record_hosts

        every = record_hosts(store, name)
        if host is not None and host not in every:
            raise EmulatorError(f"Training job {name!r} has no host {host!r} (it has {every})")
        chosen = [host] if host is not None else every
        yield from follow_logs(store, name, chosen, prefix=len(every) > 1)
        return
    hosts = _hosts_with_logs(store, name)
    if host is not None and host not in hosts:
        raise EmulatorError(f"Training job {name!r} has no host {host!r} (it has {hosts})")
    for current in [host] if host is not None else hosts:
        path = store.log_path(name, current)
        prefix = f"[{current}] " if len(hosts) > 1 else ""
        with open(path, encoding="utf-8", errors="replace", newline="\n") as lines:
            for line in lines:
                yield prefix + line.rstrip("\n")


def exec_in_job(
    name: str, command: Sequence[str], *, host: str | None = None, home: Path | None = None
) -> int:
    """Run ``command`` in ``host``'s (default: algo-1) container of running job ``name``, on
    this process's terminal (``docker exec -i``, ``-t`` when stdin is a terminal); return its
    exit status. A job (or host) not running is refused (EmulatorError), saying so."""
    from emulator.run.jobexec import exec_in_job as run_in

    return run_in(JobStore(home), name, command, host)


def metrics(name: str, *, host: str | None = None, home: Path | None = None) -> list[MetricSample]:
    """Every point of every metric of the job, by time: its MetricDefinitions points and the
    system metrics sampled while it ran (``system/memory_bytes``, ``system/cpu_percent``;
    ``MetricSample.system`` tells them apart); only ``host``'s when given."""
    from emulator.observe.resources import job_hosts, metric_samples

    store = JobStore(home)
    record = store.get(name)
    if host is not None:
        hosts = [known for known, _ in job_hosts(record)]
        if host not in hosts:
            raise EmulatorError(f"Training job {name!r} has no host {host!r} (it has {hosts})")
    samples = metric_samples(store.metrics(name), store.system_metrics(name))
    return [sample for sample in samples if host is None or sample.host == host]


def resource_use(name: str, *, home: Path | None = None) -> ResourceUse:
    """Each host's peak memory and CPU against its instance type's memory and vCPUs, with a
    warning for each host that would not fit there (``ResourceUse.warnings``)."""
    from emulator.observe.resources import resource_use as use_of

    store = JobStore(home)
    return use_of(store.get(name), store.system_metrics(name))


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
