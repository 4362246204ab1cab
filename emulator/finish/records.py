"""The DescribeTrainingJob-shaped record of a job, kept current through its lifecycle.

Times are ISO 8601 strings in UTC (the JSON form of the datetimes boto3 returns). The request's
own members are echoed back, as DescribeTrainingJob does (Tags excepted).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from emulator.request.spec import JobSpec

FINAL_MESSAGES = {
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopped": "Training job stopped",
    "MaxRuntimeExceeded": "Training job stopped: MaxRuntimeInSeconds exceeded",
    "MaxWaitTimeExceeded": "Training job stopped: MaxWaitTimeInSeconds exceeded",
}
NOT_ECHOED = ("Tags",)


@dataclass(frozen=True)
class Outcome:
    status: str  # Completed | Failed | Stopped
    secondary: str  # Completed | Failed | Stopped | MaxRuntimeExceeded | MaxWaitTimeExceeded
    reason: str | None = None

    def with_lost_output(self, lost: list[str]) -> Outcome:
        """Output that could not be kept goes into the FailureReason: never a silent Completed
        (a Completed job becomes Failed; another keeps its status and gets the line added)."""
        if not lost:
            return self
        message = f"InternalServerError: {'; '.join(lost)}"
        if self.status == "Completed":
            return Outcome.failed(message)
        reason = f"{self.reason}; {message}" if self.reason else message
        return Outcome(self.status, self.secondary, reason)

    @staticmethod
    def completed() -> Outcome:
        return Outcome("Completed", "Completed")

    @staticmethod
    def failed(reason: str) -> Outcome:
        return Outcome("Failed", "Failed", reason)

    @staticmethod
    def stopped(secondary: str) -> Outcome:
        return Outcome("Stopped", secondary)


def now() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    return moment.isoformat()


class JobRecord:
    def __init__(self, spec: JobSpec, arn: str) -> None:
        self.spec = spec
        self.arn = arn
        self.status = "InProgress"
        self.secondary = "Starting"
        self.transitions: list[dict[str, str]] = []
        self.created = now()
        self.modified = self.created
        self.training_start: datetime | None = None
        self.training_end: datetime | None = None
        # Between rounds (a spot interruption, a retry) no host runs: not billed.
        self.paused_at: datetime | None = None
        self.paused_seconds = 0.0
        self.failure_reason: str | None = None
        self.model_artifacts: str | None = None
        self.final_metrics: list[dict[str, Any]] = []

    def transition(self, status: str, message: str) -> None:
        moment = now()
        if self.transitions and "EndTime" not in self.transitions[-1]:
            self.transitions[-1]["EndTime"] = stamp(moment)
        self.transitions.append(
            {"Status": status, "StartTime": stamp(moment), "StatusMessage": message}
        )
        self.secondary = status
        if status == "Stopping":  # DescribeTrainingJob says Stopping while the hosts stop
            self.status = "Stopping"
        self.modified = moment

    def training_started(self) -> None:
        """The hosts start: TrainingStartTime at the first round, the pause ends at the
        next ones."""
        moment = now()
        if self.training_start is None:
            self.training_start = moment
        if self.paused_at is not None:
            self.paused_seconds += (moment - self.paused_at).total_seconds()
            self.paused_at = None

    def round_ended(self) -> None:
        """The hosts of a round have stopped; another round will start them again."""
        self.paused_at = now()

    def fail(self, reason: str) -> None:
        self.failure_reason = reason[:1024]
        self._end("Failed", "Failed")

    def finish(self, outcome: Outcome, final_metrics: list[dict[str, Any]]) -> None:
        self.final_metrics = final_metrics
        if outcome.reason:
            self.failure_reason = outcome.reason[:1024]
        self._end(outcome.status, outcome.secondary)

    def _end(self, status: str, secondary: str) -> None:
        self.transition(secondary, FINAL_MESSAGES[secondary])
        self.transitions[-1]["EndTime"] = self.transitions[-1]["StartTime"]
        self.status = status
        if self.training_start is not None and self.training_end is None:
            self.training_end = self.modified
            if self.paused_at is not None:  # ended between two rounds
                self.paused_seconds += (self.training_end - self.paused_at).total_seconds()
                self.paused_at = None

    def describe(self) -> dict[str, Any]:
        request = {k: copy.deepcopy(v) for k, v in self.spec.request.items() if k not in NOT_ECHOED}
        # Required in the response: the job ran under the default limit when none was given.
        request.setdefault(
            "StoppingCondition", {"MaxRuntimeInSeconds": self.spec.max_runtime_seconds}
        )
        record: dict[str, Any] = {
            "TrainingJobName": self.spec.name,
            "TrainingJobArn": self.arn,
            **request,
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary,
            "CreationTime": stamp(self.created),
            "LastModifiedTime": stamp(self.modified),
            "SecondaryStatusTransitions": copy.deepcopy(self.transitions),
            "EnableNetworkIsolation": self.spec.network_isolation,
            "EnableInterContainerTrafficEncryption": bool(
                self.spec.request.get("EnableInterContainerTrafficEncryption", False)
            ),
            "EnableManagedSpotTraining": bool(
                self.spec.request.get("EnableManagedSpotTraining", False)
            ),
            "FinalMetricDataList": copy.deepcopy(self.final_metrics),
        }
        if self.training_start is not None:
            record["TrainingStartTime"] = stamp(self.training_start)
        if self.training_end is not None and self.training_start is not None:
            record["TrainingEndTime"] = stamp(self.training_end)
            training = (self.training_end - self.training_start).total_seconds()
            record["TrainingTimeInSeconds"] = int(training)
            record["BillableTimeInSeconds"] = int(max(0.0, training - self.paused_seconds))
        if self.failure_reason is not None:
            record["FailureReason"] = self.failure_reason
        if self.model_artifacts is not None:
            record["ModelArtifacts"] = {"S3ModelArtifacts": self.model_artifacts}
        return record
