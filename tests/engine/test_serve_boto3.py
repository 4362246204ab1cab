"""boto3 against `emulator serve` (a real process), exactly as a user's script: the clients find
the server through the AWS_ENDPOINT_URL_<SERVICE> variables it printed, never an endpoint_url.

The server is the module's (tests/fixtures/serve.py): its teardown asserts exit code 130 on
SIGTERM and that no container, network, work dir or process of any job here is left.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, WaiterError

import emulator
from tests.fixtures.cli import probe_env
from tests.fixtures.jobs import BUSYBOX, probe_request, read_archive, unique_name
from tests.fixtures.serve import Served, start_serve, stop_serve

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
WAIT = {"Delay": 1, "MaxAttempts": 180}


def client(service: str) -> Any:
    # A fresh session: the variables are read when a client is made (no cached default).
    return boto3.session.Session().client(service)


def busybox_job(served: Served, script: str, name: str, **members: Any) -> dict[str, Any]:
    return probe_request(
        served.output,
        TrainingJobName=name,
        AlgorithmSpecification={
            "TrainingImage": BUSYBOX,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["sh", "-c", script],
        },
        **members,
    )


def wait_for_end(name: str) -> dict[str, Any]:
    sagemaker = client("sagemaker")
    sagemaker.get_waiter("training_job_completed_or_stopped").wait(
        TrainingJobName=name, WaiterConfig=WAIT
    )
    record: dict[str, Any] = sagemaker.describe_training_job(TrainingJobName=name)
    return record


def wait_until_training(name: str, timeout: float = 120) -> None:
    sagemaker = client("sagemaker")
    deadline = time.monotonic() + timeout
    while sagemaker.describe_training_job(TrainingJobName=name)["SecondaryStatus"] != "Training":
        assert time.monotonic() < deadline, f"{name} never started training"
        time.sleep(0.2)
    time.sleep(0.5)  # its SIGTERM trap is set


def log_lines(name: str) -> dict[str, list[str]]:
    """Every stream of the job and its messages, read as the SDKs read them: the stream
    names from DescribeLogStreams, then GetLogEvents from the head until a page is empty."""
    logs = client("logs")
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/")
    found: dict[str, list[str]] = {}
    for stream in streams["logStreams"]:
        stream_name = stream["logStreamName"]
        messages: list[str] = []
        token: str | None = None
        while True:
            page = logs.get_log_events(
                logGroupName=LOG_GROUP,
                logStreamName=stream_name,
                startFromHead=True,
                **({"nextToken": token} if token else {}),
            )
            messages += [event["message"] for event in page["events"]]
            if not page["events"]:
                break
            token = page["nextForwardToken"]
        found[stream_name] = messages
    return found


def test_the_environment_alone_leads_every_client_to_the_server(serve_env: Served) -> None:
    session = boto3.session.Session()
    for service in ("sagemaker", "logs", "sts", "iam"):
        assert session.client(service).meta.endpoint_url == serve_env.url
    identity = session.client("sts").get_caller_identity()
    assert identity["Account"].isdigit() and len(identity["Account"]) == 12


def test_a_job_runs_to_completion_with_metrics_tags_model_and_logs(serve_env: Served) -> None:
    name = unique_name("boto3")
    request = probe_request(
        serve_env.output,
        TrainingJobName=name,
        Environment=probe_env(
            stdout="epoch 1 loss=0.50\\nepoch 2 loss=0.25", model_file="weights.bin"
        ),
        Tags=[{"Key": "team", "Value": "local"}],
    )
    request["AlgorithmSpecification"]["MetricDefinitions"] = [
        {"Name": "train:loss", "Regex": "loss=([0-9.]+)"}
    ]
    sagemaker = client("sagemaker")
    arn = sagemaker.create_training_job(**request)["TrainingJobArn"]
    assert arn.endswith(f":training-job/{name}")

    record = wait_for_end(name)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert record["SecondaryStatus"] == "Completed"
    assert record["TrainingJobArn"] == arn
    assert record["ResourceConfig"]["InstanceType"] == "ml.m5.large"
    assert isinstance(record["TrainingStartTime"], datetime)
    assert record["TrainingEndTime"] >= record["TrainingStartTime"]
    assert [(m["MetricName"], m["Value"]) for m in record["FinalMetricDataList"]] == [
        ("train:loss", pytest.approx(0.25))
    ]
    assert record["ModelArtifacts"]["S3ModelArtifacts"].endswith(f"{name}/output/model.tar.gz")
    assert [s["Status"] for s in record["SecondaryStatusTransitions"]][-1] == "Completed"
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "local"}]

    streams = log_lines(name)
    assert list(streams) and all(s.startswith(f"{name}/algo-1-") for s in streams), streams
    (lines,) = streams.values()
    assert "epoch 1 loss=0.50" in lines and "epoch 2 loss=0.25" in lines, lines

    matched = client("logs").filter_log_events(
        logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/", filterPattern="epoch"
    )
    assert [e["message"] for e in matched["events"]] == ["epoch 1 loss=0.50", "epoch 2 loss=0.25"]


def test_list_with_the_paginator_and_filters(serve_env: Served) -> None:
    prefix = unique_name("listed")
    before = datetime.now(UTC) - timedelta(seconds=5)
    sagemaker = client("sagemaker")
    names = [f"{prefix}-{i}" for i in range(3)]
    for name in names:
        sagemaker.create_training_job(**busybox_job(serve_env, "echo hi", name))
    for name in names:
        assert wait_for_end(name)["TrainingJobStatus"] == "Completed"

    paginator = sagemaker.get_paginator("list_training_jobs")
    pages = list(
        paginator.paginate(
            NameContains=prefix,
            SortBy="Name",
            SortOrder="Ascending",
            PaginationConfig={"PageSize": 2},
        )
    )
    assert [len(page["TrainingJobSummaries"]) for page in pages] == [2, 1]
    listed = [s["TrainingJobName"] for page in pages for s in page["TrainingJobSummaries"]]
    assert listed == names
    summary = pages[0]["TrainingJobSummaries"][0]
    assert summary["TrainingJobStatus"] == "Completed"
    assert isinstance(summary["CreationTime"], datetime)

    def listed_with(**filters: Any) -> list[str]:
        found = paginator.paginate(NameContains=prefix, **filters).build_full_result()
        return sorted(s["TrainingJobName"] for s in found["TrainingJobSummaries"])

    assert listed_with(StatusEquals="Completed") == names
    assert listed_with(StatusEquals="InProgress") == []
    assert listed_with(CreationTimeAfter=before) == names
    assert listed_with(CreationTimeBefore=before) == []
    descending = paginator.paginate(NameContains=prefix, SortBy="Name", SortOrder="Descending")
    first_page = next(iter(descending))
    assert [s["TrainingJobName"] for s in first_page["TrainingJobSummaries"]] == names[::-1]


def test_stop_reports_stopping_then_stopped(serve_env: Served) -> None:
    name = unique_name("stopped")
    # The job takes two seconds to stop, so Stopping can be seen.
    script = (
        "trap 'echo stopping; sleep 2; echo bye; exit 0' TERM; echo up; while :; do sleep 0.2; done"
    )
    sagemaker = client("sagemaker")
    sagemaker.create_training_job(**busybox_job(serve_env, script, name))
    wait_until_training(name)

    sagemaker.stop_training_job(TrainingJobName=name)
    stopping = sagemaker.describe_training_job(TrainingJobName=name)
    assert stopping["TrainingJobStatus"] == "Stopping"
    assert stopping["SecondaryStatus"] == "Stopping"

    record = wait_for_end(name)
    assert record["TrainingJobStatus"] == "Stopped"
    assert record["SecondaryStatus"] == "Stopped"
    (lines,) = log_lines(name).values()
    assert lines[-2:] == ["stopping", "bye"], lines


def test_a_failing_job_reports_its_failure_reason(serve_env: Served) -> None:
    name = unique_name("failing")
    request = probe_request(
        serve_env.output,
        TrainingJobName=name,
        Environment=probe_env(failure="bad row 7 in train.csv", exit="3"),
    )
    client("sagemaker").create_training_job(**request)
    with pytest.raises(WaiterError, match="Failed"):
        wait_for_end(name)
    record = client("sagemaker").describe_training_job(TrainingJobName=name)
    assert record["TrainingJobStatus"] == "Failed"
    assert "bad row 7 in train.csv" in record["FailureReason"]


def test_errors_are_sagemakers(serve_env: Served) -> None:
    sagemaker = client("sagemaker")
    with pytest.raises(ClientError) as missing:
        sagemaker.describe_training_job(TrainingJobName=unique_name("missing"))
    assert missing.value.response["Error"]["Code"] == "ValidationException"
    assert missing.value.response["Error"]["Message"] == "Requested resource not found."

    name = unique_name("twice")
    sagemaker.create_training_job(**busybox_job(serve_env, "echo once", name))
    with pytest.raises(ClientError) as taken:
        sagemaker.create_training_job(**busybox_job(serve_env, "echo twice", name))
    assert taken.value.response["Error"]["Code"] == "ResourceInUse"
    wait_for_end(name)


def test_sigterm_stops_the_running_jobs_packs_them_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server of its own: SIGTERM while a job trains. stop_serve asserts exit 130 and that
    nothing of the job is left; the job ends Stopped with what it saved packed."""
    served = start_serve(tmp_path, "--stop-grace", "10")
    try:
        served.apply(monkeypatch)
        name = unique_name("sigterm")
        request = probe_request(
            served.output,
            TrainingJobName=name,
            Environment=probe_env(sleep="300", trap_term="1"),
        )
        sagemaker = client("sagemaker")
        sagemaker.create_training_job(**request)
        wait_until_training(name)
    finally:
        stop_serve(served)
    record = emulator.describe(name, home=served.home)
    assert record["TrainingJobStatus"] == "Stopped"
    # the probe saves on SIGTERM; the stop packs it
    model = read_archive(served.output / name / "output" / "model.tar.gz")
    assert model["on-term"] == b"saved\n"
