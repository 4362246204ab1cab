"""What goes wrong around a job (hosts that cannot start, containers removed from outside, a
failing log sink, file-system errors, signals during setup) ends cleanly, with a clear reason
and nothing left behind. Real engine, real files; nothing under test is mocked."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from emulator.config import resolve_region
from emulator.engine import LABEL_JOB, ContainerPlan, DockerEngine
from emulator.errors import EmulatorError, SourceError
from emulator.progress import Progress
from emulator.request.validation import parse_request
from emulator.run.job import TrainingJob
from emulator.run.options import RunOptions
from emulator.run.signals import deferred
from emulator.run.supervisor import StopCause, Supervisor, max_runtime, outcome
from emulator.state.store import JobStore
from emulator.storage.local import LocalSource
from tests.fixtures.cli import probe_env
from tests.fixtures.jobs import PROBE, JobRunner, channel, unique_name

pytestmark = pytest.mark.docker


def _plan(job: str, host: str, network: str, **members: Any) -> ContainerPlan:
    fields: dict[str, Any] = {
        "job": job,
        "host": host,
        "image": PROBE,
        "network": network,
        "entrypoint": None,
        "command": ["train"],
        "environment": {},
        "mounts": [],
    }
    fields.update(members)
    return ContainerPlan(**fields)


def _wait_running(job: str, timeout: float = 30.0) -> list[Any]:
    client = docker.from_env()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = client.containers.list(filters={"label": f"{LABEL_JOB}={job}"})
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no running container of {job}")


# -- 1. a host that cannot start -------------------------------------------------------------


def test_a_host_that_cannot_start_gets_the_started_ones_killed_after_the_grace(
    jobs: JobRunner,
) -> None:
    """algo-1 starts and ignores SIGTERM; algo-2 cannot start: algo-1 is killed once the grace
    period is over and the job fails with algo-2's reason (it used to wait forever)."""
    request = jobs.request(
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1}
    )
    engine = DockerEngine()
    name = request["TrainingJobName"]
    network = engine.create_network(f"sm-{name}", name, internal=False, hosts=2)
    containers = []
    try:
        ignoring = probe_env(ignore_term="1", sleep="300")
        containers.append(
            engine.create_container(
                _plan(name, "algo-1", network.name, environment=ignoring), f"{name}-algo-1"
            )
        )
        containers.append(
            engine.create_container(
                _plan(name, "algo-2", network.name, entrypoint=["/no/such/entrypoint"]),
                f"{name}-algo-2",
            )
        )
        outcomes: list[Any] = []

        def supervise() -> None:
            ending = Supervisor(containers, grace_seconds=1).run(
                [max_runtime(86400)],
                [],
                stop_requested=lambda: False,
                on_stop=lambda cause, message: None,
            )
            outcomes.append(outcome(ending, lambda host, code: "unused", hosts=2))

        supervising = threading.Thread(target=supervise, daemon=True)
        supervising.start()
        supervising.join(30)
        assert outcomes, "the job never ended: the started host was not killed"
        ended = outcomes[0]
        assert ended.status == "Failed"
        assert ended.reason.startswith("AlgorithmError: ")
        assert "/no/such/entrypoint" in ended.reason
        assert ended.reason.endswith("(host algo-2)")
        assert containers[0].exited() is not None
    finally:
        for container in containers:
            container.remove()
        engine.remove_network(network.name)
        engine.close()
    assert jobs.leftovers(name) == []


def test_a_second_signal_kills_the_hosts_at_once(jobs: JobRunner) -> None:
    engine = DockerEngine()
    name = unique_name()
    network = engine.create_network(f"sm-{name}", name, internal=False, hosts=1)
    container = engine.create_container(
        _plan(name, "algo-1", network.name, environment=probe_env(ignore_term="1", sleep="300")),
        f"{name}-algo-1",
    )
    try:
        supervisor = Supervisor([container], grace_seconds=300)
        started = time.monotonic()
        ending = supervisor.run(
            [max_runtime(86400)],
            [signal.SIGINT, signal.SIGINT],  # the first asks for a stop, the second kills
            stop_requested=lambda: False,
            on_stop=lambda cause, message: None,
        )
        assert time.monotonic() - started < 30
        assert supervisor.exits["algo-1"].code == 137
        assert (ending.cause, ending.interrupted) == (StopCause.STOPPED, True)
    finally:
        container.remove()
        engine.remove_network(network.name)
        engine.close()


# -- 3. a container removed from outside -----------------------------------------------------


def test_a_container_removed_from_outside_fails_the_job_with_a_clear_reason(
    jobs: JobRunner,
) -> None:
    request = jobs.request(Environment=probe_env(sleep="300"))
    name = request["TrainingJobName"]
    records: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            records.append(jobs.run(request))
        except BaseException as exc:
            errors.append(exc)

    running = threading.Thread(target=run, daemon=True)
    running.start()
    for found in _wait_running(name):
        found.remove(force=True)
    running.join(60)
    assert errors == []
    record = records[0]
    assert record["TrainingJobStatus"] == "Failed"
    assert record["FailureReason"] == (
        "ClientError: the container of algo-1 was removed from outside the emulator, exit code: 137"
    )
    assert jobs.leftovers(name) == []


# -- 4. a failing log sink -------------------------------------------------------------------


def test_a_failing_log_sink_stops_neither_the_log_file_nor_the_metrics(jobs: JobRunner) -> None:
    script = "echo first; sleep 1; echo 'loss=0.25'; sleep 0.5; echo last"
    request = jobs.request(
        AlgorithmSpecification={
            "TrainingImage": PROBE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["sh", "-c", script],
            "MetricDefinitions": [{"Name": "loss", "Regex": r"loss=([0-9.]+)"}],
        }
    )

    def broken_sink(host: str, line: str) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    record = jobs.run(request, log_sink=broken_sink)
    assert record["TrainingJobStatus"] == "Completed"
    assert [m["Value"] for m in record["FinalMetricDataList"]] == [0.25]
    log = JobStore(jobs.home).log_path(request["TrainingJobName"], "algo-1").read_text()
    assert log.splitlines() == ["first", "loss=0.25", "last"]
    reported = [n for n in jobs.notices if n.startswith("Logs of algo-1:")]
    assert len(reported) == 1
    assert "log output failed on 3 line(s)" in reported[0]
    assert "BrokenPipeError" in reported[0]


# -- 2. file-system errors -------------------------------------------------------------------


def test_a_name_too_long_in_a_channel_is_a_source_error(jobs: JobRunner, tmp_path: Path) -> None:
    source = LocalSource(str(tmp_path / ("x" * 300)))
    with pytest.raises(SourceError, match="File name too long"):
        source.entries()


def test_a_file_removed_after_the_listing_fails_the_job_with_a_client_error(
    jobs: JobRunner, make_files: Any
) -> None:
    data = make_files({"a.bin": b"a" * 10, "b.bin": b"b" * 10})

    class RemoveBeforeCopy(Progress):
        def start(self, description: str, total_bytes: int, total_objects: int) -> None:
            (data / "b.bin").unlink(missing_ok=True)

    request = jobs.request(InputDataConfig=[channel("train", data)])
    record = jobs.run(request, progress=RemoveBeforeCopy())
    assert record["TrainingJobStatus"] == "Failed"
    assert record["FailureReason"].startswith("ClientError: ")
    assert "b.bin" in record["FailureReason"]
    assert "No such file or directory" in record["FailureReason"]
    assert jobs.leftovers(request["TrainingJobName"]) == []


def test_an_output_location_that_cannot_be_written_fails_the_job_with_a_client_error(
    jobs: JobRunner,
) -> None:
    request = jobs.request()
    (jobs.output / request["TrainingJobName"]).write_text("a file where a directory goes")
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Failed"
    assert record["FailureReason"].startswith("ClientError: writing the job's artifacts to "), (
        record["FailureReason"]
    )
    assert jobs.leftovers(request["TrainingJobName"]) == []


# -- 5. the first copy error cancels the others ----------------------------------------------


def test_the_first_copy_error_cancels_the_queued_copies(make_files: Any, tmp_path: Path) -> None:
    files = {f"f{index:04d}.bin": b"x" * 256 * 1024 for index in range(400)}
    data = make_files(files)
    source = LocalSource(str(data))
    entries = source.entries()
    (data / "f0000.bin").unlink()
    dest = tmp_path / "dest"
    with pytest.raises(SourceError, match=r"f0000\.bin"):
        source.download(entries, dest)
    copied = [p for p in dest.rglob("*") if p.is_file()]
    assert len(copied) < 100, f"{len(copied)} files copied after the first error"


# -- 6. signals during the setup's Docker calls ----------------------------------------------


def test_a_signal_during_a_docker_call_lands_after_it() -> None:
    engine = DockerEngine()
    done: list[str] = []

    def call() -> str:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # the signal is delivered here when not deferred
        version = str(engine.api.version()["ApiVersion"])
        done.append(version)
        return version

    try:
        with pytest.raises(KeyboardInterrupt):
            deferred(call)
        assert len(done) == 1
        assert engine.api.version()  # the client is still usable
    finally:
        engine.close()


# -- 7. the region -----------------------------------------------------------------------------


def test_the_region_follows_botocore_precedence_everywhere(
    monkeypatch: pytest.MonkeyPatch, jobs: JobRunner
) -> None:
    environ = {"AWS_DEFAULT_REGION": "us-west-2", "AWS_REGION": "eu-west-1"}
    assert resolve_region(None, environ) == "us-west-2"
    assert resolve_region("ap-south-1", environ) == "ap-south-1"
    assert resolve_region(None, {"AWS_REGION": "eu-west-1"}) == "eu-west-1"
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    job = TrainingJob(parse_request(jobs.request()), RunOptions(home=jobs.home))
    assert job.region == "us-west-2"
    assert ":us-west-2:" in job.record.describe()["TrainingJobArn"]


# -- 8. the name is checked first ------------------------------------------------------------


def test_a_taken_job_name_is_refused_before_the_sources_are_listed(jobs: JobRunner) -> None:
    request = jobs.request()
    assert jobs.run(request)["TrainingJobStatus"] == "Completed"
    again = dict(request, InputDataConfig=[channel("train", jobs.output / "missing")])
    with pytest.raises(EmulatorError, match="already exists") as raised:
        jobs.run(again)
    assert not isinstance(raised.value, SourceError)
