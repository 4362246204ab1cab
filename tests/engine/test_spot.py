"""Rehearsing what the cloud does to a job (README "Rehearsing spot training"): spot
interruptions that restart it on fresh hosts from its checkpoints, MaxWaitTimeInSeconds, and
internal errors retried as RetryStrategy says. The job is examples/spot: a script that
checkpoints after every epoch, resumes after the last one, and writes the epochs it did into
its model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.jobs import JobRunner, channel, unique_name

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "spot"
ROUND = ["Starting", "Downloading", "Training"]


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The example's code and data, copied (the tests never write the repository)."""
    copy = tmp_path / "spot"
    shutil.copytree(EXAMPLE / "code", copy / "code")
    shutil.copytree(EXAMPLE / "data", copy / "data")
    return copy


def spot_request(
    example: Path, jobs: JobRunner, *, epochs: int, checkpoints: bool = True, **members: Any
) -> dict[str, Any]:
    request = json.loads((EXAMPLE / "request.json").read_text())
    request.update(
        TrainingJobName=unique_name("spot"),
        HyperParameters={"epochs": str(epochs), "epoch_seconds": "1"},
        InputDataConfig=[
            channel("train", example / "data" / "train"),
            channel("code", example / "code"),
        ],
        OutputDataConfig={"S3OutputPath": str(jobs.output)},
        CheckpointConfig={"S3Uri": str(example / "checkpoints")},
    )
    if not checkpoints:
        del request["CheckpointConfig"]
    request.update(members)
    return request


def statuses(record: dict[str, Any]) -> list[str]:
    return [transition["Status"] for transition in record["SecondaryStatusTransitions"]]


def epochs_done(jobs: JobRunner, record: dict[str, Any]) -> list[int]:
    return list(json.loads(jobs.model(record)["epochs.json"])["epochs_done"])


def log_lines(jobs: JobRunner) -> list[str]:
    return [line for _, line in jobs.logs]


def test_two_interruptions_resume_from_the_checkpoints_and_do_every_epoch_once(
    example: Path, jobs: JobRunner
) -> None:
    request = spot_request(example, jobs, epochs=6)
    record = jobs.run(request, interrupt_after=(2.5, 4.5), stop_grace_seconds=2)

    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == ("Completed", "Completed")
    assert statuses(record) == [
        *ROUND, "Interrupted", *ROUND, "Interrupted", *ROUND, "Uploading", "Completed"
    ]  # fmt: skip
    assert epochs_done(jobs, record) == [1, 2, 3, 4, 5, 6]
    lines = log_lines(jobs)
    assert lines.count("No checkpoint: starting at epoch 1") == 1
    assert sum(line.startswith("Resuming after epoch") for line in lines) == 2
    restored = [notice for notice in jobs.notices if notice.startswith("Restored ")]
    assert len(restored) == 2  # the second and third rounds, from CheckpointConfig.S3Uri
    # Billable: the seconds the hosts ran, at least up to the last interruption, never more
    # than the training time (which also counts the rounds' restarts).
    assert 4 <= record["BillableTimeInSeconds"] <= record["TrainingTimeInSeconds"]
    assert record["EnableManagedSpotTraining"] is True
    assert jobs.leftovers(request["TrainingJobName"]) == []


def test_without_checkpoints_an_interruption_starts_the_training_from_nothing(
    example: Path, jobs: JobRunner
) -> None:
    request = spot_request(example, jobs, epochs=3, checkpoints=False)
    record = jobs.run(request, interrupt_after=(1.5,), stop_grace_seconds=2)

    assert record["TrainingJobStatus"] == "Completed"
    assert statuses(record) == [*ROUND, "Interrupted", *ROUND, "Uploading", "Completed"]
    assert log_lines(jobs).count("No checkpoint: starting at epoch 1") == 2
    assert any("no checkpoints to resume from" in notice for notice in jobs.notices)
    assert epochs_done(jobs, record) == [1, 2, 3]


def test_max_wait_time_counts_the_interruptions_too(example: Path, jobs: JobRunner) -> None:
    stopping = {"MaxRuntimeInSeconds": 6, "MaxWaitTimeInSeconds": 6}
    request = spot_request(example, jobs, epochs=60, StoppingCondition=stopping)
    record = jobs.run(request, interrupt_after=(1, 2, 3), stop_grace_seconds=2)

    # The rounds' restarts count towards MaxWaitTimeInSeconds, not towards MaxRuntime: the
    # wait runs out first although both are 6 s.
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == (
        "Stopped",
        "MaxWaitTimeExceeded",
    )
    assert statuses(record)[-3:] == ["Stopping", "Uploading", "MaxWaitTimeExceeded"]
    assert statuses(record).count("Interrupted") == 3
    assert any("MaxWaitTimeInSeconds (6) reached" in notice for notice in jobs.notices)
    assert record["BillableTimeInSeconds"] <= record["TrainingTimeInSeconds"]
    assert jobs.leftovers(request["TrainingJobName"]) == []


def test_an_internal_error_is_retried_and_the_retry_resumes_and_succeeds(
    example: Path, jobs: JobRunner
) -> None:
    # The first attempt does epochs 1-3 before the error 3.5 s in; the retry resumes after
    # epoch 3 and is done within 3.5 s.
    request = spot_request(example, jobs, epochs=5, RetryStrategy={"MaximumRetryAttempts": 2})
    record = jobs.run(request, internal_error_after=3.5, stop_grace_seconds=2)

    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == ("Completed", "Completed")
    assert statuses(record) == [*ROUND, *ROUND, "Uploading", "Completed"]
    retried = record["SecondaryStatusTransitions"][3]["StatusMessage"]
    assert "attempt 2 of 3" in retried
    assert epochs_done(jobs, record) == [1, 2, 3, 4, 5]
    assert record["RetryStrategy"] == {"MaximumRetryAttempts": 2}


def test_an_internal_error_in_every_attempt_fails_the_job_once_the_retries_are_spent(
    example: Path, jobs: JobRunner
) -> None:
    request = spot_request(example, jobs, epochs=60, RetryStrategy={"MaximumRetryAttempts": 1})
    record = jobs.run(request, internal_error_after=1, stop_grace_seconds=2)

    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == ("Failed", "Failed")
    assert record["FailureReason"].startswith("InternalServerError: ")
    assert statuses(record) == [*ROUND, *ROUND, "Uploading", "Failed"]  # two attempts
    assert jobs.leftovers(request["TrainingJobName"]) == []


def test_a_job_that_fails_by_itself_is_not_retried(example: Path, jobs: JobRunner) -> None:
    request = spot_request(
        example,
        jobs,
        epochs=1,
        RetryStrategy={"MaximumRetryAttempts": 2},
        HyperParameters={"epochs": "not a number"},
    )
    record = jobs.run(request, internal_error_after=30, stop_grace_seconds=2)

    assert record["TrainingJobStatus"] == "Failed"
    assert record["FailureReason"].startswith("AlgorithmError: ")
    assert statuses(record).count("Training") == 1
