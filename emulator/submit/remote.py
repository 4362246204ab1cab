"""The SageMaker and CloudWatch Logs APIs through boto3, as any client reaches them: the usual
settings (AWS_ENDPOINT_URL_SAGEMAKER / _CLOUDWATCH_LOGS, AWS_PROFILE or ``--profile``,
AWS_DEFAULT_REGION or ``--region``, credentials from the environment or config files). botocore's
errors become EmulatorError here, each saying what the service answered."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from emulator.config import resolve_region
from emulator.errors import EmulatorError

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class RemoteError(EmulatorError):
    """The SageMaker (or CloudWatch Logs) API refused a call or could not be reached."""


@contextmanager
def translated(what: str) -> Iterator[None]:
    """botocore's errors of ``what`` (an operation) as RemoteError with the service's words."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Error"), error.get("Message", "")
        raise RemoteError(f"{what}: {code}: {message}".rstrip(": ")) from exc
    except botocore.exceptions.NoCredentialsError as exc:
        raise RemoteError(
            f"{what}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or choose a profile with AWS_PROFILE / --profile"
        ) from exc
    except botocore.exceptions.BotoCoreError as exc:  # unreachable endpoint, bad profile...
        raise RemoteError(f"{what}: {exc}") from exc


def _plain(value: Any) -> Any:
    """A response with its timestamps as ISO 8601 strings (the emulator's record shape)."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class SageMakerApi:
    """The few calls ``emulator submit`` makes."""

    def __init__(self, profile: str | None = None, region: str | None = None) -> None:
        # Retries as the environment or config file says (AWS_RETRY_MODE, AWS_MAX_ATTEMPTS).
        config = Config(user_agent_extra="sagemaker-training-emulator")
        with translated("AWS session"):
            session = boto3.session.Session(profile_name=profile)
            region = resolve_region(region or session.region_name)
            self.sagemaker = session.client("sagemaker", region_name=region, config=config)
            self.logs = session.client("logs", region_name=region, config=config)

    @property
    def endpoint(self) -> str:
        return str(self.sagemaker.meta.endpoint_url)

    def create(self, request: dict[str, Any]) -> str:
        """CreateTrainingJob; the job's ARN."""
        with translated("CreateTrainingJob"):
            arn: str = self.sagemaker.create_training_job(**request)["TrainingJobArn"]
        return arn

    def describe(self, name: str) -> dict[str, Any]:
        with translated("DescribeTrainingJob"):
            record: dict[str, Any] = _plain(
                self.sagemaker.describe_training_job(TrainingJobName=name)
            )
        return record

    def stop(self, name: str) -> None:
        with translated("StopTrainingJob"):
            self.sagemaker.stop_training_job(TrainingJobName=name)

    def log_streams(self, name: str) -> list[str]:
        """The job's streams (``<job>/algo-N-<epoch>``) by name; none before the group exists."""
        streams: list[str] = []
        token: str | None = None
        with translated("DescribeLogStreams"):
            while True:
                extra = {"nextToken": token} if token else {}
                try:
                    page = self.logs.describe_log_streams(
                        logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/", **extra
                    )
                except self.logs.exceptions.ResourceNotFoundException:
                    return []  # no job of the account has logged yet
                streams += [s["logStreamName"] for s in page.get("logStreams", [])]
                token = page.get("nextToken")
                if not token:
                    return sorted(set(streams))

    def events(self, stream: str, token: str | None) -> tuple[list[str], str | None]:
        """The stream's messages after ``token`` (from the start when None), and the token to
        continue from (the same one when nothing is new)."""
        messages: list[str] = []
        with translated("GetLogEvents"):
            while True:
                extra = {"nextToken": token} if token else {}
                page = self.logs.get_log_events(
                    logGroupName=LOG_GROUP, logStreamName=stream, startFromHead=True, **extra
                )
                messages += [event["message"] for event in page.get("events", [])]
                following = page.get("nextForwardToken")
                if not following or following == token:
                    return messages, token
                token = following
