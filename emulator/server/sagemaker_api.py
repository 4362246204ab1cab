"""SageMaker's training-job operations over the library's verbs.

Inputs are checked against botocore's model first (CreateTrainingJob gets the full validation
of `emulator validate`), so a client that skips its own validation still gets SageMaker's
ValidationException with every problem. Outputs go through ``wire.output`` (the model's shapes).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator import api
from emulator.errors import JobExists, JobNotFound, RequestInvalid
from emulator.request.operations import operation_problems
from emulator.server.errors import ApiError, not_found, validation_error
from emulator.server.jobs import JobRunner
from emulator.server.wire import epoch_seconds, output

SERVICE = "sagemaker"
LIST_DEFAULT_RESULTS = 10
TAGS_DEFAULT_RESULTS = 50
_SORT_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "Name": lambda record: record["TrainingJobName"],
    "CreationTime": lambda record: epoch_seconds(record["CreationTime"]) or 0.0,
    "Status": lambda record: record["TrainingJobStatus"],
}
_ARN_PREFIX = "training-job/"


class SageMakerApi:
    def __init__(self, runner: JobRunner, home: Path | None) -> None:
        self._runner = runner
        self._home = home
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "CreateTrainingJob": self._create,
            "DescribeTrainingJob": self._describe,
            "ListTrainingJobs": self._list,
            "StopTrainingJob": self._stop,
            "AddTags": self._add_tags,
            "ListTags": self._list_tags,
            "DeleteTags": self._delete_tags,
        }

    @property
    def operations(self) -> list[str]:
        return sorted(self._operations)

    def handle(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        handler = self._operations.get(operation)
        if handler is None:
            raise ApiError(
                "UnknownOperationException",
                f"SageMaker operation {operation} is not emulated; emulator serve answers "
                f"{', '.join(self.operations)}",
            )
        if operation != "CreateTrainingJob":  # its own validation says more
            problems = operation_problems(operation, body)
            if problems:
                raise validation_error(_joined(problems))
        return output(SERVICE, operation, handler(body))

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            arn = self._runner.create(body)
        except RequestInvalid as exc:
            raise validation_error(_joined(exc.problems)) from exc
        except JobExists as exc:
            raise ApiError(
                "ResourceInUse",
                f"Training job names must be unique within an AWS account and region, and a "
                f"training job with this name already exists ({exc})",
            ) from exc
        return {"TrainingJobArn": arn}

    def _describe(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._record(body["TrainingJobName"])

    def _list(self, body: dict[str, Any]) -> dict[str, Any]:
        records = [record for record in api.list_jobs(home=self._home) if _matches(record, body)]
        records.sort(
            key=_SORT_KEYS[body.get("SortBy", "CreationTime")],
            reverse=body.get("SortOrder", "Descending") == "Descending",
        )
        start = _offset(body.get("NextToken"))
        size = body.get("MaxResults", LIST_DEFAULT_RESULTS)
        page = records[start : start + size]
        answer: dict[str, Any] = {"TrainingJobSummaries": page}  # the shape keeps the summary
        if start + size < len(records):
            answer["NextToken"] = _token(start + size)
        return answer

    def _stop(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["TrainingJobName"]
        record = self._record(name)
        if record["TrainingJobStatus"] not in ("InProgress", "Stopping"):
            raise validation_error(
                f"The request was rejected because the training job is in status "
                f"{record['TrainingJobStatus']}."
            )
        if record["TrainingJobStatus"] == "InProgress":
            try:
                self._runner.stop(name)
            except JobNotFound as exc:
                raise not_found() from exc
        return {}

    def _add_tags(self, body: dict[str, Any]) -> dict[str, Any]:
        name = self._job_of(body["ResourceArn"])
        given = {tag["Key"]: tag.get("Value", "") for tag in body["Tags"]}
        api.add_tags(name, given, home=self._home)
        return {"Tags": body["Tags"]}

    def _list_tags(self, body: dict[str, Any]) -> dict[str, Any]:
        name = self._job_of(body["ResourceArn"])
        every = [{"Key": k, "Value": v} for k, v in api.list_tags(name, home=self._home).items()]
        start = _offset(body.get("NextToken"))
        size = body.get("MaxResults", TAGS_DEFAULT_RESULTS)
        answer: dict[str, Any] = {"Tags": every[start : start + size]}
        if start + size < len(every):
            answer["NextToken"] = _token(start + size)
        return answer

    def _delete_tags(self, body: dict[str, Any]) -> dict[str, Any]:
        name = self._job_of(body["ResourceArn"])
        api.delete_tags(name, list(body["TagKeys"]), home=self._home)
        return {}

    def _record(self, name: str) -> dict[str, Any]:
        try:
            return api.describe(name, home=self._home)
        except JobNotFound as exc:
            raise not_found() from exc

    def _job_of(self, arn: str) -> str:
        """The name of the training job ``arn`` names (it must exist)."""
        _, _, resource = arn.rpartition(":")
        if not resource.startswith(_ARN_PREFIX):
            raise validation_error(
                f"ResourceArn {arn!r}: emulator serve has tags of training jobs only "
                "(arn:aws:sagemaker:REGION:ACCOUNT:training-job/NAME)"
            )
        name = resource[len(_ARN_PREFIX) :]
        if self._record(name)["TrainingJobArn"] != arn:
            raise not_found()
        return name


def _matches(record: dict[str, Any], body: dict[str, Any]) -> bool:
    if "NameContains" in body and body["NameContains"] not in record["TrainingJobName"]:
        return False
    if "StatusEquals" in body and record["TrainingJobStatus"] != body["StatusEquals"]:
        return False
    for member, field, after in (
        ("CreationTimeAfter", "CreationTime", True),
        ("CreationTimeBefore", "CreationTime", False),
        ("LastModifiedTimeAfter", "LastModifiedTime", True),
        ("LastModifiedTimeBefore", "LastModifiedTime", False),
    ):
        if member in body:
            limit = epoch_seconds(body[member])
            moment = epoch_seconds(record.get(field))
            if limit is None or moment is None:
                return False
            if (moment <= limit) if after else (moment >= limit):
                return False
    # Local jobs have no warm pools nor training plans.
    return "WarmPoolStatusEquals" not in body and "TrainingPlanArnEquals" not in body


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: str | None) -> int:
    if token is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise validation_error(f"NextToken {token!r} is not a token this server gave") from exc
    if not isinstance(offset, int) or offset < 0:
        raise validation_error(f"NextToken {token!r} is not a token this server gave")
    return offset


def _joined(problems: list[str]) -> str:
    count = len(problems)
    head = "1 validation error detected" if count == 1 else f"{count} validation errors detected"
    return f"{head}: " + "; ".join(problems)
