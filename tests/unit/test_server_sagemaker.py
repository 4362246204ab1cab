"""`emulator serve`'s SageMaker operations, through boto3 as users call them (the endpoint
variables only). No engine here: a created job is registered at once and then fails with the
reason SageMaker gives when the service itself cannot run it; what runs on the engine is in
tests/engine/test_serve_jobs.py."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from emulator import api
from tests.fixtures.api_server import RunningServer
from tests.fixtures.jobs import probe_request


def settled(server: RunningServer, name: str, timeout: float = 30) -> dict[str, Any]:
    client = server.client("sagemaker")
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = client.describe_training_job(TrainingJobName=name)
        if record["TrainingJobStatus"] not in ("InProgress", "Stopping"):
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.05)


def create(server: RunningServer, tmp_path: Path, name: str, **members: Any) -> str:
    request = probe_request(tmp_path / "out", TrainingJobName=name, **members)
    arn: str = server.client("sagemaker").create_training_job(**request)["TrainingJobArn"]
    return arn


def error_of(call: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error: dict[str, str] = caught.value.response["Error"]
    return error


def raw_post(server: RunningServer, target: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target:
        headers["X-Amz-Target"] = target
    request = urllib.request.Request(server.url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_create_answers_the_arn_at_once_and_describe_shows_the_job(
    api_server: RunningServer, tmp_path: Path
) -> None:
    arn = create(api_server, tmp_path, "served-job", Tags=[{"Key": "team", "Value": "ml"}])
    assert arn.endswith(":training-job/served-job") and arn.startswith("arn:aws:sagemaker:")
    record = settled(api_server, "served-job")
    assert record["TrainingJobArn"] == arn
    # No engine answers in the unit tier: the job fails as a job, with the reason.
    assert record["TrainingJobStatus"] == "Failed"
    assert record["FailureReason"].startswith("InternalServerError: ")
    assert isinstance(record["CreationTime"], datetime)  # epoch seconds on the wire
    assert isinstance(record["LastModifiedTime"], datetime)
    assert record["ResourceConfig"]["InstanceCount"] == 1
    assert record["StoppingCondition"]["MaxRuntimeInSeconds"] == 300
    assert "Tags" not in record
    # The CLI's store holds the server's jobs.
    assert api.describe("served-job", home=api_server.home)["TrainingJobArn"] == arn


def test_an_invalid_request_gets_every_problem_in_one_validation_exception(
    api_server: RunningServer, tmp_path: Path
) -> None:
    request = probe_request(tmp_path, TrainingJobName="bad")
    request["ResourceConfig"]["InstanceCount"] = 0
    request["StoppingCondition"]["MaxRuntimeInSeconds"] = 0
    # A client that skips its own validation (the CLI's --no-param-validation, other SDKs).
    client = api_server.client("sagemaker", config=Config(parameter_validation=False))
    error = error_of(client.create_training_job, **request)
    assert error["Code"] == "ValidationException"
    assert error["Message"].startswith("2 validation errors detected: ")
    assert "ResourceConfig.InstanceCount" in error["Message"]
    assert "StoppingCondition.MaxRuntimeInSeconds" in error["Message"]
    assert api.list_jobs(home=api_server.home) == []


def test_a_taken_name_is_resource_in_use(api_server: RunningServer, tmp_path: Path) -> None:
    create(api_server, tmp_path, "taken")
    settled(api_server, "taken")
    request = probe_request(tmp_path, TrainingJobName="taken")
    error = error_of(api_server.client("sagemaker").create_training_job, **request)
    assert error["Code"] == "ResourceInUse"


def test_an_unknown_job_is_a_validation_exception_as_sagemaker_answers(
    api_server: RunningServer,
) -> None:
    client = api_server.client("sagemaker")
    for call in (client.describe_training_job, client.stop_training_job):
        error = error_of(call, TrainingJobName="nobody")
        assert error == {"Code": "ValidationException", "Message": "Requested resource not found."}


def test_stopping_a_finished_job_is_refused(api_server: RunningServer, tmp_path: Path) -> None:
    create(api_server, tmp_path, "over")
    settled(api_server, "over")
    error = error_of(api_server.client("sagemaker").stop_training_job, TrainingJobName="over")
    assert error["Code"] == "ValidationException"
    assert "status Failed" in error["Message"]


def test_list_filters_sorts_and_pages_with_the_paginator(
    api_server: RunningServer, tmp_path: Path
) -> None:
    names = [f"listed-{index}" for index in range(5)] + ["other"]
    for name in names:
        create(api_server, tmp_path, name)
    for name in names:
        settled(api_server, name)
    client = api_server.client("sagemaker")
    pages = list(
        client.get_paginator("list_training_jobs").paginate(
            NameContains="listed",
            SortBy="Name",
            SortOrder="Ascending",
            PaginationConfig={"PageSize": 2},
        )
    )
    assert [len(page["TrainingJobSummaries"]) for page in pages] == [2, 2, 1]
    assert "NextToken" not in pages[-1]
    listed = [s["TrainingJobName"] for page in pages for s in page["TrainingJobSummaries"]]
    assert listed == names[:5]
    summary = pages[0]["TrainingJobSummaries"][0]
    assert set(summary) >= {
        "TrainingJobName",
        "TrainingJobArn",
        "CreationTime",
        "TrainingJobStatus",
    }
    newest_first = client.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
    assert [s["TrainingJobName"] for s in newest_first] == names[::-1]
    assert client.list_training_jobs(StatusEquals="Completed")["TrainingJobSummaries"] == []
    assert (
        len(
            client.list_training_jobs(StatusEquals="Failed", MaxResults=100)["TrainingJobSummaries"]
        )
        == 6
    )
    later = datetime.now(UTC) + timedelta(hours=1)
    assert client.list_training_jobs(CreationTimeAfter=later)["TrainingJobSummaries"] == []
    assert (
        len(
            client.list_training_jobs(CreationTimeBefore=later, MaxResults=100)[
                "TrainingJobSummaries"
            ]
        )
        == 6
    )
    error = error_of(client.list_training_jobs, NextToken="garbage")
    assert error["Code"] == "ValidationException"


def test_tags_of_the_request_then_add_and_delete(api_server: RunningServer, tmp_path: Path) -> None:
    arn = create(api_server, tmp_path, "tagged", Tags=[{"Key": "team", "Value": "ml"}])
    client = api_server.client("sagemaker")
    assert client.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "ml"}]
    client.add_tags(ResourceArn=arn, Tags=[{"Key": "stage", "Value": "dry-run"}])
    client.delete_tags(ResourceArn=arn, TagKeys=["team"])
    assert client.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "stage", "Value": "dry-run"}]
    error = error_of(client.list_tags, ResourceArn=arn.replace("tagged", "untagged"))
    assert error["Code"] == "ValidationException"


def test_what_is_not_emulated_or_malformed_gets_a_clear_error_never_a_500(
    api_server: RunningServer,
) -> None:
    error = error_of(api_server.client("sagemaker").list_endpoints)
    assert error["Code"] == "UnknownOperationException"
    assert "ListEndpoints is not emulated" in error["Message"]
    status, body = raw_post(api_server, "SageMaker.DescribeTrainingJob", b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body = raw_post(api_server, "SageMaker.DescribeTrainingJob", b"[1, 2]")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body = raw_post(api_server, "SageMaker.DescribeTrainingJob", b'{"TrainingJobName": 5}')
    assert (status, body["__type"]) == (400, "ValidationException")
    status, body = raw_post(api_server, "Kinesis_20131202.ListStreams", b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, body = raw_post(api_server, None, b"{}")
    assert status == 400 and "neither" in body["message"]


def test_a_body_over_the_limit_gets_413(api_server: RunningServer) -> None:
    from emulator.server.app import MAX_BODY_BYTES

    status, body = raw_post(api_server, "SageMaker.CreateTrainingJob", b" " * (MAX_BODY_BYTES + 1))
    assert (status, body["__type"]) == (413, "RequestEntityTooLarge")
