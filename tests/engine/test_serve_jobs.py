"""Jobs created through `emulator serve` run on the engine as `emulator run` runs them: boto3's
waiter, Describe with metrics and artifacts, StopTrainingJob (Stopping, then Stopped), the
concurrency limit, and a server that stops its jobs when it stops. Clients reach the server
through the endpoint variables only."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from emulator import api
from tests.fixtures.api_server import RunningServer, start_server
from tests.fixtures.jobs import JobRunner, busybox_request


@pytest.fixture
def server(jobs: JobRunner, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    yield from start_server(jobs.home, monkeypatch, work_root=jobs.work_root, max_concurrent_jobs=1)


def describe(server: RunningServer, name: str) -> dict[str, Any]:
    record: dict[str, Any] = server.client("sagemaker").describe_training_job(TrainingJobName=name)
    return record


def wait_for_secondary_status(
    server: RunningServer, name: str, secondary: str, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record = describe(server, name)
        if record["SecondaryStatus"] == secondary:
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.05)


def wait_for_end(server: RunningServer, name: str) -> dict[str, Any]:
    waiter = server.client("sagemaker").get_waiter("training_job_completed_or_stopped")
    waiter.wait(TrainingJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    return describe(server, name)


def script_request(
    jobs: JobRunner, script: str, name: str, max_runtime: int = 60
) -> dict[str, Any]:
    """A busybox job running ``script``, with no channel (boto3 refuses an empty list)."""
    request = busybox_request(
        jobs, script, [], mode="File", max_runtime=max_runtime, TrainingJobName=name
    )
    del request["InputDataConfig"]
    return request


def sleeper(jobs: JobRunner, name: str) -> dict[str, Any]:
    return script_request(
        jobs,
        "echo started; trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.1; done",
        name,
        max_runtime=600,
    )


def test_a_job_runs_to_completion_with_metrics_logs_and_model(
    server: RunningServer, jobs: JobRunner
) -> None:
    script = "for i in 1 2 3; do echo loss=0.$i; done; echo weights > /opt/ml/model/w.txt"
    request = script_request(jobs, script, "served-ok")
    request["AlgorithmSpecification"]["MetricDefinitions"] = [
        {"Name": "loss", "Regex": "loss=([0-9.]+)"}
    ]
    server.client("sagemaker").create_training_job(**request)
    record = wait_for_end(server, "served-ok")
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert record["SecondaryStatus"] == "Completed"
    assert [m["MetricName"] for m in record["FinalMetricDataList"]] == ["loss"]
    assert record["FinalMetricDataList"][0]["Value"] == pytest.approx(0.3)
    assert [t["Status"] for t in record["SecondaryStatusTransitions"]] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert record["TrainingTimeInSeconds"] >= 0
    assert jobs.model(api.describe("served-ok", home=jobs.home))["w.txt"] == b"weights\n"
    assert list(api.logs("served-ok", home=jobs.home)) == ["loss=0.1", "loss=0.2", "loss=0.3"]
    assert jobs.leftovers("served-ok") == []


def test_stop_training_job_goes_stopping_then_stopped_with_nothing_left(
    server: RunningServer, jobs: JobRunner
) -> None:
    server.client("sagemaker").create_training_job(**sleeper(jobs, "served-stop"))
    wait_for_secondary_status(server, "served-stop", "Training")
    server.client("sagemaker").stop_training_job(TrainingJobName="served-stop")
    seen = describe(server, "served-stop")["TrainingJobStatus"]
    record = wait_for_end(server, "served-stop")
    assert seen in ("InProgress", "Stopping")
    assert record["TrainingJobStatus"] == "Stopped"
    assert "Stopping" in [t["Status"] for t in record["SecondaryStatusTransitions"]]
    assert jobs.leftovers("served-stop") == []


def test_jobs_over_the_limit_wait_starting_and_a_waiting_job_stops_at_once(
    server: RunningServer, jobs: JobRunner
) -> None:
    client = server.client("sagemaker")
    client.create_training_job(**sleeper(jobs, "served-first"))
    wait_for_secondary_status(server, "served-first", "Training")
    client.create_training_job(**sleeper(jobs, "served-second"))
    time.sleep(1)
    waiting = describe(server, "served-second")
    assert (waiting["TrainingJobStatus"], waiting["SecondaryStatus"]) == ("InProgress", "Starting")
    client.stop_training_job(TrainingJobName="served-second")
    assert wait_for_end(server, "served-second")["TrainingJobStatus"] == "Stopped"
    assert describe(server, "served-first")["SecondaryStatus"] == "Training"  # untouched
    client.stop_training_job(TrainingJobName="served-first")
    assert wait_for_end(server, "served-first")["TrainingJobStatus"] == "Stopped"


def test_a_server_that_stops_stops_its_jobs_and_leaves_nothing(
    jobs: JobRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = start_server(jobs.home, monkeypatch, work_root=jobs.work_root)
    server = next(running)
    server.client("sagemaker").create_training_job(**sleeper(jobs, "served-shutdown"))
    wait_for_secondary_status(server, "served-shutdown", "Training")
    with pytest.raises(StopIteration):
        next(running)  # the server's teardown: port closed, jobs stopped
    record = api.describe("served-shutdown", home=jobs.home)
    assert record["TrainingJobStatus"] == "Stopped"
    assert jobs.leftovers("served-shutdown") == []


def test_a_failing_job_reports_its_failure_reason(server: RunningServer, jobs: JobRunner) -> None:
    request = script_request(jobs, "echo bad data > /opt/ml/output/failure; exit 3", "served-fail")
    server.client("sagemaker").create_training_job(**request)
    with pytest.raises(Exception, match="Failed"):
        wait_for_end(server, "served-fail")
    record = describe(server, "served-fail")
    assert record["TrainingJobStatus"] == "Failed"
    assert record["FailureReason"].startswith("AlgorithmError: ")
    assert "bad data" in record["FailureReason"]


def test_a_missing_image_fails_the_created_job_as_a_client_error(
    server: RunningServer, jobs: JobRunner
) -> None:
    request = script_request(jobs, "true", "served-noimage")
    request["AlgorithmSpecification"]["TrainingImage"] = "sagemaker-emulator/not-built:latest"
    server.client("sagemaker").create_training_job(**request)
    with pytest.raises(Exception, match="Failed"):
        wait_for_end(server, "served-noimage")
    record = describe(server, "served-noimage")
    assert record["FailureReason"].startswith("ClientError: ")
    assert "not-built" in record["FailureReason"]


def test_a_server_that_died_mid_job_has_its_job_failed_by_the_next_one(
    jobs: JobRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A job registered by a process that is gone (a server killed with -9, say).
    code = (
        "import sys; from pathlib import Path; from emulator.state.store import JobStore; "
        "JobStore(Path(sys.argv[1])).create({'TrainingJobName': 'orphaned', "
        "'TrainingJobStatus': 'InProgress', 'SecondaryStatus': 'Training'})"
    )
    subprocess.run([sys.executable, "-c", code, str(jobs.home)], check=True)
    running = start_server(jobs.home, monkeypatch, work_root=jobs.work_root)
    server = next(running)
    try:
        record = describe(server, "orphaned")
        assert record["TrainingJobStatus"] == "Failed"
        assert record["FailureReason"].startswith("InternalServerError: ")
        assert any("orphaned" in notice for notice in server.notices)
    finally:
        with pytest.raises(StopIteration):
            next(running)
