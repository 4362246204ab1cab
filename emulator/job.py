"""The lifecycle of one training job, as SageMaker runs it, with cleanup that always happens.

    preflight  engine answers, image is local, every source lists (errors: nothing is created)
    Starting   job registered, work dir, /opt/ml tree and config files per host, job network
    Downloading  channels staged per host by their effective mode
    Training   one container per host; logs streamed to metrics, store and the user's sink
    Uploading  model.tar.gz / output.tar.gz packed and written, on success, stop AND failure
    Completed | Failed | Stopped (MaxRuntimeExceeded, Stopped)

Every resource is registered on an ExitStack the moment it exists, so containers, the network,
staged data and the work dir are removed whatever happens: failure, timeout, stop, Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator import destinations
from emulator.artifacts import failure_reason
from emulator.channels.staging import ChannelStager, ResolvedChannel, resolve_channels
from emulator.container import Container, ContainerPlan, DockerEngine, Mount, StartFailed
from emulator.errors import EmulatorError
from emulator.layout import HostLayout
from emulator.logs import LogPump
from emulator.metrics import MetricsCollector
from emulator.paths import resolve_local_paths
from emulator.progress import NO_PROGRESS, Progress
from emulator.prune import WORK_DIR_PREFIX, claim
from emulator.records import JobRecord
from emulator.spec import DEFAULT_REGION, JobSpec
from emulator.store import JobStore
from emulator.validation import parse_request

DEFAULT_STOP_GRACE_SECONDS = 120.0
POLL_SECONDS = 0.1

LogSink = Callable[[str, str], None]  # (host, line)


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
    region: str | None = None
    work_root: Path | None = None  # where per-job work dirs go; default: the temp dir
    log_sink: LogSink = field(default=_no_log)
    notice: Callable[[str], None] = field(default=_no_notice)
    progress: Progress = field(default=NO_PROGRESS)


def region_from_environment(explicit: str | None = None) -> str:
    return (
        explicit
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or DEFAULT_REGION
    )


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
        self.region = region_from_environment(options.region)
        self.store = JobStore(options.home)
        self.record = JobRecord(spec, spec.arn(self.region))
        self.metrics = MetricsCollector(spec.metric_definitions)
        self.hosts = spec.resources.hosts()
        self.interrupted = False

    # -- the lifecycle -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        engine = DockerEngine()
        try:
            return self._run(engine)
        finally:
            engine.close()

    def _run(self, engine: DockerEngine) -> dict[str, Any]:
        engine.require_image(self.spec.image)
        channels = resolve_channels(self.spec)
        destinations.check_output_location(self.spec)
        self.store.create(self.record.describe(), replace=self.options.replace)
        self._transition("Starting", "Preparing the instances for training")
        try:
            with ExitStack() as cleanup:
                self._run_stages(engine, channels, cleanup)
        except KeyboardInterrupt:
            self._finish_interrupted()
            raise
        except EmulatorError as exc:
            self.record.fail(f"ClientError: {exc}")
        self._save()
        if self.interrupted:
            raise KeyboardInterrupt
        return self.record.describe()

    def _run_stages(
        self, engine: DockerEngine, channels: dict[str, ResolvedChannel], cleanup: ExitStack
    ) -> None:
        work = Path(
            tempfile.mkdtemp(
                prefix=f"{WORK_DIR_PREFIX}{self.spec.name}-", dir=self.options.work_root
            )
        )
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        claim(work)
        layouts = [HostLayout(work / host.name, host) for host in self.hosts]
        for layout in layouts:
            layout.create(self.spec)

        network = engine.create_network(
            f"sm-{self.spec.name}-{work.name[-8:]}",
            self.spec.name,
            internal=self.spec.network_isolation,
        )
        cleanup.callback(engine.remove_network, network)

        self._transition("Downloading", "Downloading input data")
        stager = ChannelStager(
            self.spec, channels, work, self.options.progress, self.options.notice
        )
        cleanup.enter_context(stager)
        extra_mounts = {layout.host.name: stager.stage(layout) for layout in layouts}

        containers = []
        for layout in layouts:
            plan = self._container_plan(layout, network, extra_mounts[layout.host.name])
            container = engine.create_container(plan, f"{network}-{layout.host.name}")
            cleanup.callback(container.remove)
            containers.append(container)

        pumps = [self._log_pump(container) for container in containers]
        for pump in pumps:
            cleanup.callback(pump.join)
        self._transition("Training", "Training image download completed. Training in progress.")
        self.record.training_started()
        stager.start_feeding()
        outcome = self._supervise(containers, layouts)
        for pump in pumps:
            pump.join()
        stager.stop_feeding()

        self._transition("Uploading", "Uploading generated training model")
        self.record.model_artifacts = destinations.publish_artifacts(
            self.spec,
            [layout.model_dir for layout in layouts],
            [layout.output_data_dir for layout in layouts],
            self.options.notice,
        )
        self.record.finish(outcome, self.metrics.final_metric_data_list())

    # -- containers ------------------------------------------------------------------------

    def _container_plan(
        self, layout: HostLayout, network: str, extra: list[Mount]
    ) -> ContainerPlan:
        spec = self.spec
        mounts = [Mount(target, source) for target, source in layout.mounts(spec).items()]
        if spec.entrypoint is None and spec.arguments is None:
            command: list[str] | None = ["train"]
        else:
            command = list(spec.arguments) if spec.arguments is not None else None
        environment = {
            **spec.environment,
            "TRAINING_JOB_NAME": spec.name,
            "TRAINING_JOB_ARN": spec.arn(self.region),
            "AWS_REGION": self.region,
        }
        return ContainerPlan(
            job=spec.name,
            host=layout.host.name,
            image=spec.image,
            network=network,
            entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
            command=command,
            environment=environment,
            mounts=mounts + extra,
        )

    def _log_pump(self, container: Container) -> LogPump:
        host = container.host
        log_file = self.store.log_path(self.spec.name, host)

        def on_line(line: str) -> None:
            points = self.metrics.feed(line, host)
            if points:
                self.store.add_metrics(self.spec.name, points)
            self.options.log_sink(host, line)

        pump = LogPump(container.attach(), log_file, on_line)
        pump.start()
        return pump

    def _supervise(self, containers: list[Container], layouts: list[HostLayout]) -> Outcome:
        """Start every host and wait for the job's end: all exit, a failure, the runtime limit,
        a stop request, or Ctrl-C (which stops the hosts, then propagates)."""
        supervisor = Supervisor(containers, self.options.stop_grace_seconds)
        started_at = time.monotonic()
        started: list[Container] = []
        try:
            for container in containers:
                container.start()
                started.append(container)
        except StartFailed as exc:
            # The hosts already running are killed: the job cannot proceed without this one.
            Supervisor(started, grace_seconds=0).stop_all()
            Supervisor(started, grace_seconds=0).wait_all()
            return Outcome.failed(f"AlgorithmError: {exc.reason}, exit code: {exc.exit_code}")

        deadline = started_at + self.spec.max_runtime_seconds
        try:
            return self._wait(supervisor, layouts, deadline)
        except KeyboardInterrupt:
            # Stopped like StopTrainingJob (artifacts still packed); run() re-raises at the end.
            self.interrupted = True
            self.options.notice("Interrupted: stopping the job (Ctrl-C again to kill at once)")
            self._transition("Stopping", "Stopping the training job")
            supervisor.stop_all()
            try:
                supervisor.wait_all()
            except KeyboardInterrupt:
                supervisor.kill_all()
                supervisor.wait_all()
            return Outcome.stopped("Stopped")

    def _wait(self, supervisor: Supervisor, layouts: list[HostLayout], deadline: float) -> Outcome:
        by_host = {layout.host.name: layout for layout in layouts}
        stop_reason: str | None = None
        next_stop_check = 0.0
        while not supervisor.all_exited():
            now = time.monotonic()
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
                self._transition("Stopping", "Stopping the training job")
                supervisor.stop_all()
            if stop_reason is None and now >= next_stop_check:
                next_stop_check = now + 1.0
                if self.store.stop_requested(self.spec.name):
                    stop_reason = "Stopped"
                    self.options.notice("Stop requested: stopping the job")
                    self._transition("Stopping", "Stopping the training job")
                    supervisor.stop_all()
            supervisor.enforce_grace()
            time.sleep(POLL_SECONDS)
        failed = supervisor.first_failure()
        if stop_reason in ("MaxRuntimeExceeded", "Stopped"):
            return Outcome.stopped(stop_reason)
        if failed is not None:
            host, code = failed
            reason = failure_reason(code, by_host[host].failure_file)
            if len(self.hosts) > 1:
                reason = f"{reason} (host {host})"
            return Outcome.failed(reason)
        return Outcome.completed()

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


@dataclass(frozen=True)
class Outcome:
    status: str  # Completed | Failed | Stopped
    secondary: str  # Completed | Failed | Stopped | MaxRuntimeExceeded
    reason: str | None = None

    @staticmethod
    def completed() -> Outcome:
        return Outcome("Completed", "Completed")

    @staticmethod
    def failed(reason: str) -> Outcome:
        return Outcome("Failed", "Failed", reason)

    @staticmethod
    def stopped(secondary: str) -> Outcome:
        return Outcome("Stopped", secondary)


class Supervisor:
    """Tracks the hosts' containers: exit codes, SIGTERM with a grace period, then SIGKILL."""

    def __init__(self, containers: list[Container], grace_seconds: float) -> None:
        self.containers = containers
        self.grace_seconds = grace_seconds
        self.exit_codes: dict[str, int] = {}
        self.kill_at: float | None = None

    def poll(self) -> None:
        for container in self.containers:
            if container.host not in self.exit_codes:
                code = container.exit_code()
                if code is not None:
                    self.exit_codes[container.host] = code

    def all_exited(self) -> bool:
        self.poll()
        return len(self.exit_codes) == len(self.containers)

    def first_failure(self) -> tuple[str, int] | None:
        for container in self.containers:
            code = self.exit_codes.get(container.host)
            if code not in (None, 0):
                return container.host, code
        return None

    def stop_all(self, grace: float | None = None) -> None:
        grace = self.grace_seconds if grace is None else grace
        for container in self.containers:
            if container.host not in self.exit_codes:
                container.signal("SIGTERM")
        deadline = time.monotonic() + grace
        self.kill_at = deadline if self.kill_at is None else min(self.kill_at, deadline)

    def enforce_grace(self) -> None:
        if self.kill_at is not None and time.monotonic() >= self.kill_at:
            self.kill_all()

    def kill_all(self) -> None:
        for container in self.containers:
            if container.host not in self.exit_codes:
                container.signal("SIGKILL")

    def wait_all(self) -> None:
        while not self.all_exited():
            self.enforce_grace()
            time.sleep(POLL_SECONDS)
