"""The DescribeTrainingJob record of a job (CONTRACT.md section 1): transitions with start and
end times, final statuses, training time, a bounded FailureReason, and the request echoed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from emulator.finish import records
from emulator.finish.records import JobRecord, Outcome
from emulator.request.validation import parse_request
from tests.fixtures.jobs import probe_request

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ARN = "arn:aws:sagemaker:us-east-1:000000000000:training-job/test"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """The records' clock, moved forward by hand: ``clock(seconds)``."""
    current = [START]
    monkeypatch.setattr(records, "now", lambda: current[0])

    def advance(seconds: float) -> None:
        current[0] += timedelta(seconds=seconds)

    return advance


def new_record(**members: Any) -> JobRecord:
    return JobRecord(parse_request(probe_request(Path("/tmp/out"), **members)), ARN)


def run_through(record: JobRecord, advance: Callable[[float], None], outcome: Outcome) -> None:
    """The lifecycle of job.py: Starting, Downloading, Training, Uploading, final status."""
    record.transition("Starting", "Preparing the instances for training")
    advance(1)
    record.transition("Downloading", "Downloading input data")
    advance(2)
    record.transition("Training", "Training image download completed. Training in progress.")
    record.training_started()
    advance(42.7)
    record.transition("Uploading", "Uploading generated training model")
    advance(1)
    record.finish(outcome, [])


def iso(offset: float) -> str:
    return (START + timedelta(seconds=offset)).isoformat()


def test_a_new_record_is_in_progress_and_starting(clock: Callable[[float], None]) -> None:
    described = new_record().describe()
    assert described["TrainingJobStatus"] == "InProgress"
    assert described["SecondaryStatus"] == "Starting"
    assert described["SecondaryStatusTransitions"] == []
    assert described["CreationTime"] == described["LastModifiedTime"] == iso(0)
    assert described["TrainingJobArn"] == ARN
    for absent in ("TrainingStartTime", "TrainingEndTime", "TrainingTimeInSeconds"):
        assert absent not in described
    for absent in ("FailureReason", "ModelArtifacts"):
        assert absent not in described


def test_each_transition_ends_when_the_next_starts(clock: Callable[[float], None]) -> None:
    record = new_record()
    run_through(record, clock, Outcome.completed())
    assert record.describe()["SecondaryStatusTransitions"] == [
        {
            "Status": "Starting",
            "StartTime": iso(0),
            "EndTime": iso(1),
            "StatusMessage": "Preparing the instances for training",
        },
        {
            "Status": "Downloading",
            "StartTime": iso(1),
            "EndTime": iso(3),
            "StatusMessage": "Downloading input data",
        },
        {
            "Status": "Training",
            "StartTime": iso(3),
            "EndTime": iso(45.7),
            "StatusMessage": "Training image download completed. Training in progress.",
        },
        {
            "Status": "Uploading",
            "StartTime": iso(45.7),
            "EndTime": iso(46.7),
            "StatusMessage": "Uploading generated training model",
        },
        {
            "Status": "Completed",
            "StartTime": iso(46.7),
            "EndTime": iso(46.7),
            "StatusMessage": "Training job completed",
        },
    ]


@pytest.mark.parametrize(
    ("outcome", "status", "secondary", "message"),
    [
        (Outcome.completed(), "Completed", "Completed", "Training job completed"),
        (
            Outcome.failed("AlgorithmError: x, exit code: 1"),
            "Failed",
            "Failed",
            "Training job failed",
        ),
        (Outcome.stopped("Stopped"), "Stopped", "Stopped", "Training job stopped"),
        (
            Outcome.stopped("MaxRuntimeExceeded"),
            "Stopped",
            "MaxRuntimeExceeded",
            "Training job stopped: MaxRuntimeInSeconds exceeded",
        ),
    ],
    ids=["completed", "failed", "stopped", "max-runtime"],
)
def test_final_status_and_secondary_status(
    clock: Callable[[float], None], outcome: Outcome, status: str, secondary: str, message: str
) -> None:
    record = new_record()
    run_through(record, clock, outcome)
    described = record.describe()
    assert described["TrainingJobStatus"] == status
    assert described["SecondaryStatus"] == secondary
    assert described["SecondaryStatusTransitions"][-1]["Status"] == secondary
    assert described["SecondaryStatusTransitions"][-1]["StatusMessage"] == message
    assert all("EndTime" in t for t in described["SecondaryStatusTransitions"])
    assert described["LastModifiedTime"] == iso(46.7)
    assert ("FailureReason" in described) == (status == "Failed")


def test_training_time_runs_from_training_start_to_end(clock: Callable[[float], None]) -> None:
    record = new_record()
    run_through(record, clock, Outcome.completed())
    described = record.describe()
    assert described["TrainingStartTime"] == iso(3)
    assert described["TrainingEndTime"] == iso(46.7)
    assert described["TrainingTimeInSeconds"] == 43  # whole seconds, as the API reports them
    assert described["BillableTimeInSeconds"] == 43


def test_a_job_that_failed_before_training_has_no_training_times(
    clock: Callable[[float], None],
) -> None:
    record = new_record()
    record.transition("Starting", "Preparing the instances for training")
    clock(1)
    record.fail("ClientError: the channel train cannot be read")
    described = record.describe()
    assert described["TrainingJobStatus"] == "Failed"
    assert described["SecondaryStatus"] == "Failed"
    assert described["FailureReason"] == "ClientError: the channel train cannot be read"
    assert [t["Status"] for t in described["SecondaryStatusTransitions"]] == ["Starting", "Failed"]
    for absent in ("TrainingStartTime", "TrainingEndTime", "TrainingTimeInSeconds"):
        assert absent not in described


@pytest.mark.parametrize("length", [1023, 1024, 1025, 50_000])
def test_failure_reason_is_at_most_1024_characters(
    clock: Callable[[float], None], length: int
) -> None:
    reason = "AlgorithmError: " + "x" * length
    failed, early = new_record(), new_record()
    run_through(failed, clock, Outcome.failed(reason))
    early.fail(reason)
    for record in (failed, early):
        assert record.describe()["FailureReason"] == reason[:1024]


def test_the_request_is_echoed_without_tags(clock: Callable[[float], None]) -> None:
    request = probe_request(
        Path("/tmp/out"),
        HyperParameters={"epochs": "3"},
        Environment={"MODE": "fast"},
        Tags=[{"Key": "team", "Value": "ml"}],
        CheckpointConfig={"S3Uri": "s3://bucket/ckpt"},
    )
    described = JobRecord(parse_request(request), ARN).describe()
    assert "Tags" not in described
    for member, value in request.items():
        if member != "Tags":
            assert described[member] == value, member
    assert described["EnableNetworkIsolation"] is False
    assert described["EnableInterContainerTrafficEncryption"] is False
    assert described["EnableManagedSpotTraining"] is False


def test_the_record_is_a_copy(clock: Callable[[float], None]) -> None:
    record = new_record(HyperParameters={"epochs": "3"})
    record.transition("Starting", "Preparing the instances for training")
    described = record.describe()
    described["HyperParameters"]["epochs"] = "changed"
    described["SecondaryStatusTransitions"].clear()
    again = record.describe()
    assert again["HyperParameters"] == {"epochs": "3"}
    assert len(again["SecondaryStatusTransitions"]) == 1


def test_final_metrics_and_model_artifacts_are_reported(clock: Callable[[float], None]) -> None:
    record = new_record()
    record.model_artifacts = "file:///tmp/out/test/output/model.tar.gz"
    final = [{"MetricName": "loss", "Value": 0.5, "Timestamp": iso(2)}]
    record.finish(Outcome.completed(), final)
    described = record.describe()
    assert described["FinalMetricDataList"] == final
    assert described["ModelArtifacts"] == {
        "S3ModelArtifacts": "file:///tmp/out/test/output/model.tar.gz"
    }


def test_a_request_without_stopping_condition_reports_the_default_limit(
    clock: Callable[[float], None],
) -> None:
    request = probe_request(Path("/tmp/out"))
    del request["StoppingCondition"]
    described = JobRecord(parse_request(request), ARN).describe()
    # StoppingCondition is a required member of DescribeTrainingJob's response.
    assert described["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}


def test_billable_time_leaves_out_the_pauses_between_rounds(
    clock: Callable[[float], None],
) -> None:
    record = new_record()
    record.transition("Training", "Training image download completed. Training in progress.")
    record.training_started()
    clock(10)
    record.transition("Interrupted", "The spot instances were interrupted")
    record.round_ended()
    clock(4)  # the next round is prepared: no host runs
    record.transition("Training", "Training image download completed. Training in progress.")
    record.training_started()
    clock(6)
    record.finish(Outcome.completed(), [])
    described = record.describe()
    assert described["TrainingStartTime"] == iso(0)  # the first round's
    assert described["TrainingTimeInSeconds"] == 20
    assert described["BillableTimeInSeconds"] == 16


def test_a_job_ending_between_rounds_bills_none_of_the_pause(
    clock: Callable[[float], None],
) -> None:
    record = new_record()
    record.training_started()
    clock(10)
    record.round_ended()
    clock(5)
    record.finish(Outcome.stopped("Stopped"), [])
    assert record.describe()["BillableTimeInSeconds"] == 10
    assert record.describe()["TrainingTimeInSeconds"] == 15


def test_lost_output_fails_a_completed_job_and_is_added_to_another() -> None:
    lost = ["the output of algo-1 was cut short"]
    assert Outcome.completed().with_lost_output(lost) == Outcome.failed(
        "InternalServerError: the output of algo-1 was cut short"
    )
    stopped = Outcome.stopped("Stopped").with_lost_output(lost)
    assert (stopped.status, stopped.reason) == (
        "Stopped",
        "InternalServerError: the output of algo-1 was cut short",
    )
    assert Outcome.completed().with_lost_output([]) == Outcome.completed()
