"""The lifecycle of one training job, as SageMaker runs it, with cleanup that always happens.

    preflight  engine answers, image is local, every source lists (errors: nothing is created)
    Starting   job registered, work dir, /opt/ml tree and config files per host, job network
    Downloading  channels staged per host by their effective mode; checkpoints restored
    Training   one container per host; logs streamed to metrics, store and the user's sink;
               checkpoint dirs synced back while it runs (checkpoints.py)
    Uploading  checkpoints synced a last time; model.tar.gz / output.tar.gz packed and written,
               on success, stop AND failure
    Completed | Failed | Stopped (MaxRuntimeExceeded, Stopped)

Every resource is registered on an ExitStack the moment it exists, so containers, the network,
staged data and the work dir are removed whatever happens: failure, timeout, stop, Ctrl-C. The
cleanup itself runs with Ctrl-C and SIGTERM deferred (in the main thread), so a second signal
cannot cut it short and leave something behind; the signal is honoured once it is done.
Every Docker call runs with those signals deferred too (``_deferred``; the wait loop polls
them): a KeyboardInterrupt raised inside docker-py could leave its connection pool locked and
the cleanup would then hang. Interrupts land between Docker calls; downloads stay
interruptible.

Preflight refuses, before anything exists: local locations that expose sensitive host paths
(``safety.py``), instance types with GPUs on an engine without GPU support (unless ``--gpus 0``),
a missing image or unreadable data.

Multi-host jobs: hosts algo-1..algo-N, one container each on the job's private network, each
resolving every other by name from its first instant (fixed addresses and /etc/hosts entries,
see ``container.py``). The completion rule:

* the job is Completed when every host has exited 0;
* when a host exits non-zero, every other host still running gets SIGTERM and, after the grace
  period, SIGKILL; the job is Failed with the FailureReason of the host that failed FIRST (by
  the engine's exit time, not by host number), suffixed "(host algo-N)" when there are several
  hosts; hosts exiting because of that SIGTERM never replace the first failure;
* a host that cannot start at all (bad entrypoint) fails the job the same way at once: the
  hosts already started get SIGTERM and, after the same grace period, SIGKILL (a second
  Ctrl-C/SIGTERM kills them at once);
* a host whose container is removed from outside the emulator (``docker rm -f``) counts as a
  host that exited 137, with the FailureReason "ClientError: the container of algo-N was
  removed from outside the emulator, exit code: 137";
* MaxRuntimeInSeconds, ``emulator stop`` and Ctrl-C/SIGTERM stop every host (SIGTERM, grace,
  SIGKILL) and the job is Stopped (MaxRuntimeExceeded or Stopped), whatever the exit codes.

Artifacts of every host are packed in every case (see ``artifacts.py`` for name clashes).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from emulator.checkpoints.sync import CheckpointSync, check_checkpoint_location
from emulator.config import S3Settings, effective_s3_settings, resolve_region
from emulator.engine.docker import (
    EXIT_REMOVED,
    Container,
    ContainerPlan,
    DockerEngine,
    Exit,
    JobNetwork,
    Mount,
    StartFailed,
)
from emulator.errors import EmulatorError, JobNotFound
from emulator.finish import publish as destinations
from emulator.finish.artifacts import failure_reason
from emulator.finish.records import JobRecord, Outcome
from emulator.observe.logs import LogPump
from emulator.observe.metrics import MetricsCollector
from emulator.plan.credentials import container_credentials
from emulator.plan.hosts import HostResources, plan_resources
from emulator.plan.layout import HostLayout
from emulator.plan.safety import check_entries, check_locations
from emulator.progress import NO_PROGRESS, Progress
from emulator.request.paths import resolve_local_paths
from emulator.request.spec import JobSpec
from emulator.request.validation import parse_request
from emulator.run.workdir import claim, make_work_dir, remove_work_dir
from emulator.stage.stager import ChannelStager, ResolvedChannel, resolve_channels
from emulator.state.store import JobStore

DEFAULT_STOP_GRACE_SECONDS = 120.0
POLL_SECONDS = 0.1

LogSink = Callable[[str, str], None]  # (host, line)
T = TypeVar("T")


def _no_log(host: str, line: str) -> None:
    pass


def _no_notice(message: str) -> None:
    pass


@dataclass
class RunOptions:
    """How to run a job; everything has a default suitable for the Python API."""

    home: Path | None = None  # state dir; default: EMULATOR_HOME or the user's state dir
    base_dir: Path | None = None  # relative local paths of the request resolve here (cwd)
    replace: bool = False  # discard an earlier finished job of the same name
    stop_grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS
    # The job's region (its ARN, the containers' AWS_REGION); default: s3.region, then
    # config.resolve_region. It is also the S3 client's region when s3 names none.
    region: str | None = None
    # How the emulator reaches S3 (endpoint, profile, region, retries: config.S3Settings),
    # as the CLI's --s3-endpoint-url/--profile/--region; None = from the environment
    # (AWS_* variables, config files). Passed down to every S3 user of the job (channels,
    # the FastFile child, outputs, checkpoints, --pass-aws-credentials); os.environ is
    # never written.
    s3: S3Settings | None = None
    work_root: Path | None = None  # where per-job work dirs go; default: the temp dir
    log_sink: LogSink = field(default=_no_log)
    notice: Callable[[str], None] = field(default=_no_notice)
    progress: Progress = field(default=NO_PROGRESS)
    # GPUs per host: None = as the instance type has (instances.py), 0 = none, -1 = all.
    gpus: int | None = None
    # Give each container its instance type's vCPUs and memory as limits (instances.py).
    apply_instance_limits: bool = False
    # Let channels, checkpoints and output use sensitive host paths (safety.py).
    allow_sensitive_paths: bool = False
    # Give the containers the AWS credentials boto3 resolves; never with network isolation
    # (credentials.py).
    pass_aws_credentials: bool = False


def run_training_job(
    request: dict[str, Any] | JobSpec, options: RunOptions | None = None
) -> dict[str, Any]:
    """Run a CreateTrainingJob request to the end; return its DescribeTrainingJob record.

    Raises EmulatorError subclasses for what the user must fix (invalid request, no engine,
    image or data missing); a job that fails is a result: status Failed with FailureReason.
    KeyboardInterrupt stops the job (SIGTERM, grace, SIGKILL), records it Stopped, cleans up,
    and propagates.
    """
    options = options or RunOptions()
    spec = request if isinstance(request, JobSpec) else parse_request(request)
    spec = resolve_local_paths(spec, options.base_dir or Path.cwd())
    return TrainingJob(spec, options).run()


class TrainingJob:
    def __init__(self, spec: JobSpec, options: RunOptions) -> None:
        self.spec = spec
        self.options = options
        s3_region = options.s3.region if options.s3 is not None else None
        self.region = resolve_region(options.region or s3_region)
        self.s3 = effective_s3_settings(options.s3, options.region)
        self.store = JobStore(options.home)
        self.record = JobRecord(spec, spec.arn(self.region))
        self.metrics = MetricsCollector(spec.metric_definitions)
        self.hosts = spec.resources.hosts()
        self.interrupted = False
        self.resources: dict[str, HostResources] = {}
        self.aws_environment: dict[str, str] = {}  # {} unless pass_aws_credentials

    # -- the lifecycle -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        engine = DockerEngine()
        try:
            return self._run(engine)
        finally:
            engine.close()

    def _run(self, engine: DockerEngine) -> dict[str, Any]:
        self._check_name_free()  # cheap: before the preflight's listings and HEADs
        channels = self._preflight(engine)
        # The atomic check-and-register: another emulator may have taken the name meanwhile.
        self.store.create(self.record.describe(), replace=self.options.replace)
        try:
            cleanup = ExitStack()
            try:
                self._transition("Starting", "Preparing the instances for training")
                self._run_stages(engine, channels, cleanup)
            finally:
                with _signals_deferred() as deferred:
                    cleanup.close()
                if deferred:  # the job ended as it did; the signal still ends the run
                    self.interrupted = True
        except KeyboardInterrupt:
            self._finish_interrupted()
            raise
        except EmulatorError as exc:
            self.record.fail(f"ClientError: {exc}")
        except Exception as exc:  # a bug of ours: the record must not stay InProgress
            self.record.fail(f"InternalServerError: {type(exc).__name__}: {exc}")
            self._save()
            raise
        self._save()
        if self.interrupted:
            raise KeyboardInterrupt
        return self.record.describe()

    def _check_name_free(self) -> None:
        """Refuse a name already taken, as ``store.create`` would, before any slow check.
        With --replace the decision (is the old job's process still alive?) is left to
        ``store.create``."""
        if self.options.replace:
            return
        try:
            existing = self.store.get(self.spec.name)
        except JobNotFound:
            return
        raise EmulatorError(
            f"Training job {self.spec.name!r} already exists (status "
            f"{existing.get('TrainingJobStatus')}); job names are unique, as in SageMaker: "
            "choose another --job-name, or pass --replace to discard the old record"
        )

    def _preflight(self, engine: DockerEngine) -> dict[str, ResolvedChannel]:
        """Everything that can be refused before anything exists."""
        if not self.options.allow_sensitive_paths:
            check_locations(self.spec)
        _deferred(engine.require_image, self.spec.image)
        self.resources = self._host_resources(engine)
        channels = resolve_channels(self.spec, self.s3)
        if not self.options.allow_sensitive_paths:
            for resolved in channels.values():
                check_entries(resolved.channel.name, resolved.entries)
        destinations.check_output_location(self.spec, self.s3)
        check_checkpoint_location(self.spec, self.s3)
        self.aws_environment = container_credentials(
            self.spec, self.options.pass_aws_credentials, self.s3
        )
        return channels

    def _host_resources(self, engine: DockerEngine) -> dict[str, HostResources]:
        """GPUs (refused up front when the engine has none) and limits of every host."""
        resources, notes = plan_resources(
            self.hosts,
            gpus=self.options.gpus,
            apply_limits=self.options.apply_instance_limits,
            gpu_support=lambda: _deferred(engine.gpu_support),
            engine_cpus=lambda: _deferred(engine.cpu_count),
        )
        for note in notes:
            self.options.notice(note)
        return resources

    def _run_stages(
        self, engine: DockerEngine, channels: dict[str, ResolvedChannel], cleanup: ExitStack
    ) -> None:
        work = make_work_dir(self.spec.name, self.options.work_root)
        cleanup.callback(
            remove_work_dir,
            work,
            image=self.spec.image,
            job=self.spec.name,
            notice=self.options.notice,
            engine=engine,
        )
        claim(work, self.spec.image)
        layouts = [HostLayout(work / host.name, host) for host in self.hosts]
        for layout in layouts:
            layout.create(self.spec)

        network = _deferred(
            engine.create_network,
            f"sm-{self.spec.name}-{work.name[-8:]}",
            self.spec.name,
            internal=self.spec.network_isolation,
            hosts=len(self.hosts),
        )
        cleanup.callback(engine.remove_network, network.name)

        self._transition("Downloading", "Downloading input data")
        stager = ChannelStager(
            self.spec, channels, work, self.options.progress, self.options.notice, self.s3
        )
        cleanup.enter_context(stager)
        extra_mounts = {layout.host.name: stager.stage(layout) for layout in layouts}
        checkpoints = CheckpointSync(
            self.spec.checkpoint,
            {layout.host.name: layout.checkpoint_dir for layout in layouts},
            self.options.notice,
            self.options.progress,
            self.s3,
        )
        cleanup.enter_context(checkpoints)  # synced once more however the job ends
        checkpoints.restore()

        # Log pumps end when their container is removed: join them only after that.
        pumps: list[LogPump] = []
        cleanup.callback(_join_all, pumps)
        containers = []
        for layout in layouts:
            plan = self._container_plan(layout, network, extra_mounts[layout.host.name])
            container = _deferred(
                engine.create_container, plan, f"{network.name}-{layout.host.name}"
            )
            cleanup.callback(container.remove)
            containers.append(container)

        pumps.extend(self._log_pump(container) for container in containers)
        self._transition("Training", "Training image download completed. Training in progress.")
        self.record.training_started()
        stager.start_feeding()
        checkpoints.start()
        outcome = self._supervise(containers, layouts)
        for pump in pumps:
            pump.join()
            for problem in pump.errors:
                self.options.notice(f"Logs of {pump.host}: {problem}")
        feeding_failures = stager.stop_feeding()
        if feeding_failures and outcome.status == "Completed":
            # The container saw a truncated channel: SageMaker fails such a job on its side.
            outcome = Outcome.failed(f"ClientError: {'; '.join(feeding_failures)}")

        self._transition("Uploading", "Uploading generated training model")
        checkpoints.finish()
        self.record.model_artifacts = destinations.publish_artifacts(
            self.spec,
            [layout.model_dir for layout in layouts],
            [layout.output_data_dir for layout in layouts],
            self.options.notice,
            self.s3,
        )
        self.record.finish(outcome, self.metrics.final_metric_data_list())

    # -- containers ------------------------------------------------------------------------

    def _container_plan(
        self, layout: HostLayout, network: JobNetwork, extra: list[Mount]
    ) -> ContainerPlan:
        spec = self.spec
        mounts = [Mount(target, source) for target, source in layout.mounts(spec).items()]
        if spec.entrypoint is None and spec.arguments is None:
            command: list[str] | None = ["train"]
        else:
            command = list(spec.arguments) if spec.arguments is not None else None
        environment = {
            **self.aws_environment,
            **spec.environment,
            "TRAINING_JOB_NAME": spec.name,
            "TRAINING_JOB_ARN": spec.arn(self.region),
            "AWS_REGION": self.region,
        }
        names = [host.name for host in self.hosts]
        resources = self.resources.get(layout.host.name, HostResources())
        return ContainerPlan(
            job=spec.name,
            host=layout.host.name,
            image=spec.image,
            network=network.name,
            entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
            command=command,
            environment=environment,
            mounts=mounts + extra,
            gpus=resources.gpus,
            address=network.address(names.index(layout.host.name)),
            hosts_file=network.hosts_file(names),
            nano_cpus=resources.limits.nano_cpus,
            memory_bytes=resources.limits.memory_bytes,
        )

    def _log_pump(self, container: Container) -> LogPump:
        host = container.host
        log_file = self.store.log_path(self.spec.name, host)

        def metrics(line: str) -> None:
            points = self.metrics.feed(line, host)
            if points:
                self.store.add_metrics(self.spec.name, points)

        def sink(line: str) -> None:
            self.options.log_sink(host, line)

        consumers = {"metrics": metrics, "log output": sink}
        pump = LogPump(_deferred(container.attach), log_file, consumers, host=host)
        pump.start()
        return pump

    def _supervise(self, containers: list[Container], layouts: list[HostLayout]) -> Outcome:
        """Start every host and wait for the job's end: all exit, a failure, the runtime limit,
        a stop request, or Ctrl-C/SIGTERM.

        Signals are deferred for the whole phase and polled by the wait loop: a
        KeyboardInterrupt raised inside a Docker call could leave the client's connection pool
        locked, and the stop that follows would then hang."""
        supervisor = Supervisor([], self.options.stop_grace_seconds)  # hosts join as started
        started_at = time.monotonic()
        with _signals_deferred() as signals:
            try:
                for container in containers:
                    container.start()
                    supervisor.containers.append(container)
            except StartFailed as exc:
                return self._start_failed(exc, containers, supervisor, signals)
            deadline = started_at + self.spec.max_runtime_seconds
            return self._wait(supervisor, layouts, deadline, signals)

    def _start_failed(
        self,
        exc: StartFailed,
        containers: list[Container],
        supervisor: Supervisor,
        signals: list[int],
    ) -> Outcome:
        """A host could not start: the job cannot proceed without it. The hosts already
        running are stopped as after a failure (SIGTERM, the job's grace period, SIGKILL; a
        second Ctrl-C/SIGTERM kills at once); those never started are removed."""
        started = supervisor.containers
        if started:
            self.options.notice(
                f"{containers[len(started)].host} could not start: stopping the other hosts"
            )
        supervisor.stop_all()
        supervisor.wait_all(signals)
        if signals:
            self.interrupted = True  # the job failed as it did; the signal still ends the run
        _remove_never_started(containers, started)
        reason = f"AlgorithmError: {exc.reason}, exit code: {exc.exit_code}"
        if len(self.hosts) > 1:
            reason = f"{reason} (host {containers[len(started)].host})"
        return Outcome.failed(reason)

    def _wait(
        self,
        supervisor: Supervisor,
        layouts: list[HostLayout],
        deadline: float,
        signals: list[int],
    ) -> Outcome:
        """Wait for every host to exit, applying the completion rule of the module doc."""
        by_host = {layout.host.name: layout for layout in layouts}
        stop_reason: str | None = None
        next_stop_check = 0.0
        while not supervisor.all_exited():
            now = time.monotonic()
            if signals and not self.interrupted:
                # Stopped like StopTrainingJob (artifacts still packed); run() re-raises.
                self.interrupted = True
                stop_reason = "Stopped"
                self.options.notice("Interrupted: stopping the job (Ctrl-C again to kill at once)")
                self._stopping(supervisor)
            elif len(signals) > 1:
                supervisor.kill_all()
            supervisor.poll()
            failed = supervisor.first_failure()
            if failed and stop_reason is None:
                stop_reason = "failure"
                supervisor.stop_all()
            if stop_reason is None and now >= deadline:
                stop_reason = "MaxRuntimeExceeded"
                self.options.notice(
                    f"MaxRuntimeInSeconds ({self.spec.max_runtime_seconds}) reached: stopping"
                )
                self._stopping(supervisor)
            if stop_reason is None and now >= next_stop_check:
                next_stop_check = now + 1.0
                if self.store.stop_requested(self.spec.name):
                    stop_reason = "Stopped"
                    self.options.notice("Stop requested: stopping the job")
                    self._stopping(supervisor)
            supervisor.enforce_grace()
            time.sleep(POLL_SECONDS)
        failed = supervisor.first_failure()
        if stop_reason in ("MaxRuntimeExceeded", "Stopped"):
            return Outcome.stopped(stop_reason)
        if failed is not None:
            host, code = failed
            if supervisor.removed_from_outside(host):
                removed = f"the container of {host} was removed from outside the emulator"
                return Outcome.failed(f"ClientError: {removed}, exit code: {code}")
            reason = failure_reason(code, by_host[host].failure_file)
            if len(self.hosts) > 1:
                reason = f"{reason} (host {host})"
            return Outcome.failed(reason)
        return Outcome.completed()

    def _stopping(self, supervisor: Supervisor) -> None:
        self._transition("Stopping", "Stopping the training job")
        supervisor.stop_all()

    # -- records ---------------------------------------------------------------------------

    def _transition(self, status: str, message: str) -> None:
        self.record.transition(status, message)
        self.options.notice(f"{status} - {message}")
        self._save()

    def _save(self) -> None:
        self.store.update(self.record.describe())

    def _finish_interrupted(self) -> None:
        self.record.finish(Outcome.stopped("Stopped"), self.metrics.final_metric_data_list())
        self._save()


class Supervisor:
    """Tracks the hosts' containers: exits, SIGTERM with a grace period, then SIGKILL."""

    def __init__(self, containers: list[Container], grace_seconds: float) -> None:
        self.containers = containers
        self.grace_seconds = grace_seconds
        self.exits: dict[str, Exit] = {}
        self.kill_at: float | None = None

    @property
    def exit_codes(self) -> dict[str, int]:
        return {host: exit.code for host, exit in self.exits.items()}

    def poll(self) -> None:
        for container in self.containers:
            if container.host not in self.exits:
                exited = container.exited()
                if exited is not None:
                    self.exits[container.host] = exited

    def removed_from_outside(self, host: str) -> bool:
        """Whether ``host`` ended because its container was removed from outside (a 137 exit
        seen before the removal is checked with the engine, see container.py)."""
        exited = self.exits[host]
        if exited.removed:
            return True
        container = next(c for c in self.containers if c.host == host)
        return exited.code == EXIT_REMOVED and container.removed_from_outside()

    def all_exited(self) -> bool:
        self.poll()
        return len(self.exits) == len(self.containers)

    def first_failure(self) -> tuple[str, int] | None:
        """The host that exited non-zero first (engine exit time; host order on ties)."""
        order = [container.host for container in self.containers]
        failed = [
            (exit.finished_at, order.index(host), host, exit.code)
            for host, exit in self.exits.items()
            if exit.code != 0
        ]
        if not failed:
            return None
        _, _, host, code = min(failed)
        return host, code

    def stop_all(self, grace: float | None = None) -> None:
        grace = self.grace_seconds if grace is None else grace
        for container in self.containers:
            if container.host not in self.exits:
                container.signal("SIGTERM")
        deadline = time.monotonic() + grace
        self.kill_at = deadline if self.kill_at is None else min(self.kill_at, deadline)

    def enforce_grace(self) -> None:
        if self.kill_at is not None and time.monotonic() >= self.kill_at:
            self.kill_all()

    def kill_all(self) -> None:
        for container in self.containers:
            if container.host not in self.exits:
                container.signal("SIGKILL")

    def wait_all(self, signals: list[int] | None = None) -> None:
        """Wait for every host to exit, SIGKILLing those left when the grace period ends or
        when a second signal arrives in ``signals`` (the deferred Ctrl-C/SIGTERM: the first
        one asks for the stop already under way)."""
        killed = False
        while not self.all_exited():
            if signals is not None and len(signals) > 1 and not killed:
                killed = True
                self.kill_all()
            self.enforce_grace()
            time.sleep(POLL_SECONDS)


def _remove_never_started(containers: list[Container], started: list[Container]) -> None:
    """Remove the containers that never started now: their output streams (and log pumps)
    end only when they are removed."""
    for container in containers:
        if container not in started:
            container.remove()


def _join_all(pumps: list[LogPump]) -> None:
    for pump in pumps:
        pump.join()


DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _deferred(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a Docker call with Ctrl-C and SIGTERM deferred, then raise KeyboardInterrupt if
    one arrived meanwhile: the interrupt lands after the call, never inside docker-py."""
    with _signals_deferred() as arrived:
        try:
            result = call(*args, **kwargs)
        except BaseException as exc:
            if arrived:
                raise KeyboardInterrupt from exc
            raise
    if arrived:
        raise KeyboardInterrupt
    return result


@contextmanager
def _signals_deferred() -> Iterator[list[int]]:
    """Hold back Ctrl-C (and a SIGTERM handled in Python) while the body runs; yields the
    list of signals that arrived meanwhile. Outside the main thread this does nothing."""
    arrived: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return
    previous = {}
    for number in DEFERRED_SIGNALS:
        handler = signal.getsignal(number)
        if callable(handler):  # a Python handler (Ctrl-C's, or the CLI's SIGTERM one)
            previous[number] = handler
            signal.signal(number, lambda signum, frame: arrived.append(signum))
    try:
        yield arrived
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
