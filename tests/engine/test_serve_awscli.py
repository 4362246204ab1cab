"""The AWS CLI (awscli, a dev dependency) against `emulator serve`, as a user's shell runs it:
the endpoint variables the server printed lead `aws` there; no --endpoint-url anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import probe_env
from tests.fixtures.jobs import probe_request, unique_name
from tests.fixtures.serve import Served

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def aws_binary() -> str:
    binary = Path(sys.executable).parent / "aws"
    if not binary.exists():
        pytest.fail(
            f"the AWS CLI is missing from {binary.parent}: awscli is a dev dependency of this "
            "project; install the dev dependencies into this venv (pip install -e '.[dev]')",
            pytrace=False,
        )
    return str(binary)


def aws(served: Served, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [aws_binary(), *args, "--output", "json"],
        env=served.client_environ(AWS_PAGER=""),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert result.returncode == 0, f"aws {' '.join(args)}: {result.stderr}"
    return result


def aws_json(served: Served, *args: str) -> Any:
    return json.loads(aws(served, *args).stdout)


def wait_for_end(served: Served, name: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = aws_json(
            served, "sagemaker", "describe-training-job", "--training-job-name", name
        )
        if record["TrainingJobStatus"] not in ("InProgress", "Stopping"):
            return record
        assert time.monotonic() < deadline, f"{name} still {record['TrainingJobStatus']}"
        time.sleep(0.5)


def test_create_wait_describe_list_and_logs(serve: Served, tmp_path: Path) -> None:
    name = unique_name("awscli")
    request = probe_request(
        serve.output,
        TrainingJobName=name,
        Environment=probe_env(stdout="epoch 1 loss=0.4\\nepoch 2 loss=0.2"),
    )
    request["AlgorithmSpecification"]["MetricDefinitions"] = [
        {"Name": "loss", "Regex": "loss=([0-9.]+)"}
    ]
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request))

    created = aws_json(
        serve, "sagemaker", "create-training-job", "--cli-input-json", f"file://{request_file}"
    )
    assert created["TrainingJobArn"].endswith(f":training-job/{name}")

    record = wait_for_end(serve, name)
    # The CLI's waiter sleeps its 120 s delay after a first look at a running job: it is asked
    # once the job has ended, and must accept what Describe says at once.
    aws(
        serve, "sagemaker", "wait", "training-job-completed-or-stopped", "--training-job-name", name
    )
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert [m["MetricName"] for m in record["FinalMetricDataList"]] == ["loss"]
    assert record["FinalMetricDataList"][0]["Value"] == pytest.approx(0.2)

    listed = aws_json(serve, "sagemaker", "list-training-jobs", "--name-contains", name)
    assert [s["TrainingJobName"] for s in listed["TrainingJobSummaries"]] == [name]

    streams = aws_json(
        serve,
        "logs",
        "describe-log-streams",
        "--log-group-name",
        LOG_GROUP,
        "--log-stream-name-prefix",
        f"{name}/",
    )["logStreams"]
    assert len(streams) == 1 and streams[0]["logStreamName"].startswith(f"{name}/algo-1-")
    events = aws_json(
        serve,
        "logs",
        "get-log-events",
        "--log-group-name",
        LOG_GROUP,
        "--log-stream-name",
        streams[0]["logStreamName"],
        "--start-from-head",
    )
    messages = [event["message"] for event in events["events"]]
    assert "epoch 1 loss=0.4" in messages and "epoch 2 loss=0.2" in messages, messages
    assert events["nextForwardToken"]


def test_errors_reach_the_cli_as_sagemakers(serve: Served) -> None:
    result = aws(
        serve,
        "sagemaker",
        "describe-training-job",
        "--training-job-name",
        unique_name("missing"),
        check=False,
    )
    assert result.returncode != 0
    assert "ValidationException" in result.stderr
    assert "Requested resource not found." in result.stderr
