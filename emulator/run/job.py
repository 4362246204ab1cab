"""The lifecycle of one training job, as SageMaker runs it, with cleanup that always happens.

    preflight    engine answers, image is local, every source lists (errors: nothing is created)
    Starting     job registered, work dir, /opt/ml tree and config files per host; the job
                 network made meanwhile, in the background (hosts.py)
    Downloading  channels staged per host by their effective mode; checkpoints restored
    Training     one container per host, all created and started at once; logs streamed to
                 metrics, store and the user's sink (observe/); checkpoint dirs synced back while
                 it runs; the supervisor applies the completion rule (supervisor.py)
    Uploading    checkpoints synced a last time; model.tar.gz / output.tar.gz packed and written,
                 on success, stop AND failure, while the containers and network are removed
    Completed | Failed | Stopped (MaxRuntimeExceeded, MaxWaitTimeExceeded, Stopped)

A spot interruption or an internal error to retry (rehearsed: rounds.py) ends a round instead:
its hosts are stopped, its checkpoints synced a last time, its resources removed, and the job
starts again at Starting on fresh hosts, as many rounds as it takes.

Every resource is registered on an ExitStack the moment it exists, so containers, the network,
staged data and the work dir are removed whatever happens: failure, timeout, stop, Ctrl-C. The
cleanup itself runs with Ctrl-C and SIGTERM deferred (in the main thread), so a second signal
cannot cut it short and leave something behind; the signal is honoured once it is done. Every
Docker call runs with those signals deferred too (signals.py), or in a thread of its own, which
signals never interrupt (parallel.py). Transitions reach the store in the background
(saver.py); the final record is written once everything is removed.

Preflight refuses, before anything exists: local locations that expose sensitive host paths
(plan/safety.py), instance types with GPUs on an engine without GPU support (unless
``--gpus 0``), a missing image or unreadable data.

Multi-host jobs: hosts algo-1..algo-N, one container each on the job's private network, each
resolving every other by name from its first instant (fixed addresses and /etc/hosts entries).
A single-host job without network isolation joins the engine's default bridge instead, as
``docker run`` does (engine/network.py says why).
Artifacts of every host are packed in every case (see finish/artifacts.py for name clashes).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator.config import effective_s3_settings, resolve_region
from emulator.engine import Container, ContainerPlan, DockerEngine, JobNetwork, Mount
from emulator.errors import EmulatorError
from emulator.finish import publish
from emulator.finish.artifacts import failure_reason
from emulator.finish.records import JobRecord, Outcome
from emulator.observe.joblogs import JobLogs
from emulator.plan.containers import container_environment, container_plan
from emulator.plan.hosts import HostResources
from emulator.plan.layout import HostLayout
from emulator.request.paths import resolve_local_paths
from emulator.request.spec import JobSpec
from emulator.request.validation import parse_request
from emulator.run.checkpointing import NoCheckpoints, job_checkpoints
from emulator.run.debugging import announce_ports, debug_plans
from emulator.run.hosts import JobHosts, resource_name
from emulator.run.kept import keep_job
from emulator.run.options import RunOptions
from emulator.run.preflight import preflight
from emulator.run.registration import check_name_free, create_record
from emulator.run.resources import ResourceMonitor
from emulator.run.rounds import Restart, Rounds, check_rehearsal
from emulator.run.saver import RecordSaver
from emulator.run.signals import deferred, signals_deferred
from emulator.run.supervisor import Ending, StopCause, Supervisor, outcome
from emulator.run.workdir import claim, make_work_dir, remove_work_dir
from emulator.stage.stager import ChannelStager, ResolvedChannel
from emulator.state.store import JobStore

if TYPE_CHECKING:
    from emulator.checkpoints.group import SyncGroup


def run_training_job(
    request: dict[str, Any] | JobSpec, options: RunOptions | None = None
) -> dict[str, Any]:
    """Run a CreateTrainingJob request to the end; return its DescribeTrainingJob record.

    Raises EmulatorError subclasses for what the user must fix (invalid request, no engine,
    image or data missing); a job that fails is a result: status Failed with FailureReason.
    KeyboardInterrupt stops the job (SIGTERM, grace, SIGKILL), records it Stopped, cleans up,
    and propagates.
    """
    return _training_job(request, options).run()


def register_training_job(
    request: dict[str, Any] | JobSpec, options: RunOptions | None = None
) -> TrainingJob:
    """Validate a request and register its job (InProgress, Starting) without running it, as
    CreateTrainingJob answers at once: ``run()`` on the result runs it later, in any thread.

    Raises RequestInvalid for an invalid request and JobExists for a taken name; whatever the
    preflight then refuses (a missing image or data) makes the job Failed, as in SageMaker."""
    job = _training_job(request, options)
    job.register()
    return job


def _training_job(request: dict[str, Any] | JobSpec, options: RunOptions | None) -> TrainingJob:
    options = options or RunOptions()
    spec = request if isinstance(request, JobSpec) else parse_request(request)
    spec = resolve_local_paths(spec, options.base_dir or Path.cwd())
    check_rehearsal(spec, options)  # --interrupt-after, --inject-internal-error-after
    return TrainingJob(spec, options)


@dataclass(frozen=True)
class Staged:
    """What the Downloading stage leaves for the containers."""

    stager: ChannelStager
    checkpoints: SyncGroup | NoCheckpoints
    mounts: dict[str, list[Mount]]  # per host: the staged channels' mounts


class TrainingJob:
    """One job from its spec to its record: one method per SecondaryStatus."""

    def __init__(self, spec: JobSpec, options: RunOptions) -> None:
        self.spec = spec
        self.options = options
        s3_region = options.s3.region if options.s3 is not None else None
        self.region = resolve_region(options.region or s3_region)
        self.s3 = effective_s3_settings(options.s3, options.region)
        self.store = JobStore(options.home)
        self.saver = RecordSaver(self.store)
        self.record = JobRecord(spec, spec.arn(self.region))
        self.logs = JobLogs(
            self.store, spec.name, spec.metric_definitions, options.log_sink, options.notice
        )
        self.hosts = spec.resources.hosts()
        self.interrupted = False
        self.resources: dict[str, HostResources] = {}
        self.aws_environment: dict[str, str] = {}  # {} unless pass_aws_credentials
        self.registered = False  # by ``register``: the record exists before the run
        self.code_mounts: list[Mount] = []  # --code: DIR read-only at /opt/ml/code
        self.rounds = Rounds(spec, options, created=time.monotonic())

    def register(self) -> None:
        """Take the job's name and record it (InProgress, Starting) before it runs."""
        self._check_name_free()
        self._create_record()
        self.registered = True

    def run(self) -> dict[str, Any]:
        if self.registered and self.store.stop_requested(self.spec.name):
            self.record.finish(Outcome.stopped("Stopped"), [])  # stopped while it waited
            self._save()
            return self.record.describe()
        try:
            engine = DockerEngine()
        except EmulatorError as exc:
            if not self.registered:
                raise
            self.record.fail(f"InternalServerError: {exc}")  # the server's engine, not the job
            self._save()
            return self.record.describe()
        try:
            return self._run(engine)
        finally:
            engine.close()
            self.saver.close()  # its thread ends, whatever ended the run (written already)

    def _run(self, engine: DockerEngine) -> dict[str, Any]:
        if self.registered:
            try:
                channels = self._preflight(engine)
            except EmulatorError as exc:  # the job exists: it fails, as SageMaker's would
                self.record.fail(f"ClientError: {exc}")
                self._save()
                return self.record.describe()
        else:
            self._check_name_free()  # cheap: before the preflight's listings and HEADs
            channels = self._preflight(engine)
            # The atomic check-and-register: another emulator may have taken the name.
            self._create_record()
        try:
            cleanup = ExitStack()
            try:
                self._run_stages(engine, channels, cleanup)
            finally:
                with signals_deferred() as arrived:
                    cleanup.close()
                if arrived:  # the job ended as it did; the signal still ends the run
                    self.interrupted = True
        except KeyboardInterrupt:
            self.record.finish(Outcome.stopped("Stopped"), self.logs.final_metric_data_list())
            self._save()
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

    # -- before anything exists --------------------------------------------------------------

    def _create_record(self) -> None:
        create_record(self.store, self.spec, self.record.describe(), self.options.replace)

    def _check_name_free(self) -> None:
        check_name_free(self.store, self.spec.name, self.options.replace)

    def _preflight(self, engine: DockerEngine) -> dict[str, ResolvedChannel]:
        """Everything that can be refused before anything exists (preflight.py)."""
        prepared = preflight(self.spec, self.options, engine, self.s3)
        self.spec, self.code_mounts = prepared.spec, prepared.code_mounts
        self.resources, self.aws_environment = prepared.resources, prepared.aws_environment
        return prepared.channels

    # -- the stages --------------------------------------------------------------------------

    def _run_stages(
        self, engine: DockerEngine, channels: dict[str, ResolvedChannel], cleanup: ExitStack
    ) -> None:
        # After an error or an interrupt: the containers are removed first (the rounds'
        # cleanups: their output ends), then the log readers stop, saying what they did not
        # pass on. On the way to the end, ``logs.wait`` has read every host's output before
        # any removal.
        cleanup.callback(self.logs.close)
        starting = "Preparing the instances for training"
        while True:
            round_cleanup = cleanup.enter_context(ExitStack())  # this round's resources
            hosts = JobHosts(
                engine, self.spec.name, hosts=len(self.hosts), isolated=self.spec.network_isolation
            )
            work, layouts = self._starting(engine, hosts, round_cleanup, starting)
            staged = self._downloading(channels, work, layouts, round_cleanup)
            ended = self._training(hosts, work, layouts, staged, round_cleanup)
            if not isinstance(ended, Restart):
                break
            self._next_round(hosts, staged, round_cleanup, ended)
            starting = ended.starting
        # The hosts are done with: their containers (and the network) go while the artifacts
        # are packed and the staged data and work dir removed (``hosts.finish`` waits).
        hosts.tear_down()
        self._uploading(engine, layouts, staged.checkpoints, ended)

    def _next_round(
        self, hosts: JobHosts, staged: Staged, round_cleanup: ExitStack, restart: Restart
    ) -> None:
        """A round ended for another to start: its checkpoints synced a last time, then
        everything it made removed (hosts, staged data, work dir), as a reclaimed instance's
        would be."""
        self.record.round_ended()  # no host runs until the next round's Training
        hosts.tear_down()
        staged.checkpoints.finish()  # what could not be synced fails the job (ClientError)
        with signals_deferred() as arrived:
            round_cleanup.close()
        if arrived:  # Ctrl-C or SIGTERM between rounds: the job is stopped
            raise KeyboardInterrupt
        self.options.notice(restart.notice)

    def _starting(
        self, engine: DockerEngine, hosts: JobHosts, cleanup: ExitStack, message: str
    ) -> tuple[Path, list[HostLayout]]:
        """The work dir, the job network (made in the background while each host's /opt/ml
        tree and config files are written and the data staged)."""
        self._transition("Starting", message)
        # The cleanup's last step: the containers and network removed, or their removal (in
        # the background since the hosts stopped: tear_down) waited for.
        cleanup.callback(hosts.finish)
        work = make_work_dir(self.spec.name, self.options.work_root)
        if self.options.keep:  # containers and work dir stay; a notice says so at the end
            cleanup.callback(keep_job(self.store, self.spec.name, work, hosts, self.options.notice))
        else:
            cleanup.callback(
                remove_work_dir,
                work,
                image=self.spec.image,
                job=self.spec.name,
                notice=self.options.notice,
                engine=engine,
            )
        claim(work, self.spec.image)
        hosts.prepare_network(resource_name(self.spec.name, work))
        layouts = [HostLayout(work / host.name, host) for host in self.hosts]
        for layout in layouts:
            layout.create(self.spec)
        return work, layouts

    def _downloading(
        self,
        channels: dict[str, ResolvedChannel],
        work: Path,
        layouts: list[HostLayout],
        cleanup: ExitStack,
    ) -> Staged:
        """Every channel staged per host by its mode; checkpoints restored."""
        self._transition("Downloading", "Downloading input data")
        stager = ChannelStager(
            self.spec, channels, work, self.options.progress, self.options.notice, self.s3
        )
        cleanup.enter_context(stager)
        mounts = {layout.host.name: stager.stage(layout) for layout in layouts}
        checkpoints = job_checkpoints(
            self.spec,
            layouts,
            self.options.notice,
            self.options.progress,
            self.s3,
        )
        cleanup.enter_context(checkpoints)  # synced once more however the job ends
        checkpoints.restore()
        return Staged(stager, checkpoints, mounts)

    def _training(
        self,
        hosts: JobHosts,
        work: Path,
        layouts: list[HostLayout],
        staged: Staged,
        cleanup: ExitStack,
    ) -> Outcome | Restart:
        """One container per host, run to the round's end under the completion rule: the
        job's Outcome, or the Restart of another round."""
        cleanup.callback(hosts.clean_up_containers)  # each one from its creation on
        network = deferred(hosts.network)
        name = resource_name(self.spec.name, work)
        plans = [
            (self._container_plan(layout, network, staged.mounts), f"{name}-{layout.host.name}")
            for layout in layouts
        ]
        plans = deferred(debug_plans, hosts.engine, plans, self.options)  # --shell, --publish
        containers = deferred(hosts.create_containers, plans)
        monitor = ResourceMonitor(hosts.engine, self.store, self.spec.name, self.options.notice)
        cleanup.enter_context(monitor).watch(containers)  # CPU and memory: system metrics
        outputs = deferred(hosts.attach, containers)
        for container, output in zip(containers, outputs, strict=True):
            self.logs.follow(container.host, output)
        self._transition("Training", "Training image download completed. Training in progress.")
        self.record.training_started()
        staged.stager.start_feeding()
        staged.checkpoints.start()
        ending, ran_seconds = self._supervise(hosts, containers)
        self.logs.wait()  # no fixed timeout: every line reaches the file, metrics and sink
        feeding_failures = staged.stager.stop_feeding()
        restart = self.rounds.ended(ending.cause, ran_seconds)
        if restart is not None:
            return restart
        failure_files = {layout.host.name: layout.failure_file for layout in layouts}
        ended = outcome(
            ending,
            lambda host, code: failure_reason(code, failure_files[host]),
            len(self.hosts),
        ).with_lost_output(self.logs.lost())
        if feeding_failures and ended.status == "Completed":
            # The container saw a truncated channel: SageMaker fails such a job on its side.
            ended = Outcome.failed(f"ClientError: {'; '.join(feeding_failures)}")
        return ended

    def _uploading(
        self,
        engine: DockerEngine,
        layouts: list[HostLayout],
        checkpoints: SyncGroup | NoCheckpoints,
        ended: Outcome,
    ) -> None:
        """Checkpoints synced a last time; the model and output data packed and written.
        Files a root container kept to itself (an emulator run by a non-root user) are read
        through the engine, as root."""
        self._transition("Uploading", "Uploading generated training model")
        checkpoints.finish()
        self.record.model_artifacts = publish.publish_artifacts(
            self.spec,
            [layout.model_dir for layout in layouts],
            [layout.output_data_dir for layout in layouts],
            self.options.notice,
            self.s3,
            read_as_root=lambda directory, into: deferred(
                engine.read_tree_as_root, self.spec.image, directory, self.spec.name, into
            ),
        )
        self.record.finish(ended, self.logs.final_metric_data_list())

    # -- containers --------------------------------------------------------------------------

    def _container_plan(
        self, layout: HostLayout, network: JobNetwork, mounts: dict[str, list[Mount]]
    ) -> ContainerPlan:
        return container_plan(
            self.spec,
            layout,
            self.hosts,
            network,
            environment=container_environment(self.spec, self.region, self.aws_environment),
            resources=self.resources.get(layout.host.name, HostResources()),
            extra_mounts=[*mounts[layout.host.name], *self.code_mounts],
        )

    def _supervise(self, hosts: JobHosts, containers: list[Container]) -> tuple[Ending, float]:
        """Start every host (all at once) and wait for the round's end (supervisor.py): how
        it ended, and the seconds the hosts ran. The wait wakes as soon as a host exits
        (``JobHosts.sleep``).

        Signals are deferred for the whole phase and polled by the wait loop: a
        KeyboardInterrupt raised inside a Docker call could leave the client's connection pool
        locked, and the stop that follows would then hang."""
        with signals_deferred() as signals:
            began = time.monotonic()
            started = hosts.start(containers)
            announce_ports(containers, self.options)  # --publish: where each port is reached
            supervisor = Supervisor(started, self.options.stop_grace_seconds, sleep=hosts.sleep)
            ending = supervisor.run(
                self.rounds.deadlines(),
                signals,
                stop_requested=lambda: self.store.stop_requested(self.spec.name),
                on_stop=self._stopping,
            )
            ran_seconds = time.monotonic() - began
        if ending.interrupted:
            self.interrupted = True  # the job ended as it did; the signal still ends the run
        # Those that never started: their output ends only when they are removed.
        running = {host.host for host in started if host in supervisor.started}
        deferred(hosts.remove_containers, [c for c in containers if c.host not in running])
        hosts.release_network()  # every host has stopped
        return ending, ran_seconds

    def _stopping(self, cause: StopCause, message: str) -> None:
        self.options.notice(message)
        if cause is StopCause.INTERRUPTED:
            self._transition("Interrupted", "The spot instances were interrupted")
        elif cause not in (StopCause.FAILURE, StopCause.INTERNAL_ERROR):
            self._transition("Stopping", "Stopping the training job")

    # -- records -----------------------------------------------------------------------------

    def _transition(self, status: str, message: str) -> None:
        self.record.transition(status, message)
        self.options.notice(f"{status} - {message}")
        self.saver.save(self.record.describe())  # written in the background (saver.py)

    def _save(self) -> None:
        """Write the record now, after any transition still being written."""
        self.saver.save_now(self.record.describe())
