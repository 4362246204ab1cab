"""How to submit a job, and what came of it: the options the CLI's flags and the Python API
share (``emulator.api.submit``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator.config import S3Settings
from emulator.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from emulator.submit.upload import StagedLocation

LogSink = Callable[[str, str], None]  # (host, line); a ``flush()`` method is called per poll
Notice = Callable[[str], None]
DEFAULT_POLL_SECONDS = 5.0


def no_log(host: str, line: str) -> None:
    """The default log sink: the lines are not shown."""


def no_notice(message: str) -> None:
    """The default notice sink: the library says nothing."""


def leave_running(name: str) -> bool:
    """The default answer to Ctrl-C while waiting: leave the remote job running."""
    return False


@dataclass(frozen=True)
class SubmitOptions:
    """Everything has a default suitable for the Python API."""

    staging: str | None = None  # s3://BUCKET/PREFIX where local data goes
    role: str | None = None  # RoleArn, filling or replacing the request's
    wait: bool = True  # follow the job to its end
    dry_run: bool = False  # plan only: nothing uploaded, nothing sent
    base_dir: Path | None = None  # relative local paths of the request resolve here (cwd)
    s3: S3Settings | None = None  # how the staging bucket is reached (None: the environment)
    profile: str | None = None  # the SageMaker/Logs clients' profile and region (None: the
    region: str | None = None  # environment's, as boto3 resolves them)
    poll_seconds: float = DEFAULT_POLL_SECONDS
    # Refused with a reason (they choose what the local engine does): --gpus, credentials.
    gpus: int | None = None
    pass_aws_credentials: bool = False
    progress: Progress = field(default=NO_PROGRESS)
    notice: Notice = field(default=no_notice)
    log_sink: LogSink = field(default=no_log)
    # Ctrl-C while waiting: called with the job's name; True stops the remote job.
    on_interrupt: Callable[[str], bool] = field(default=leave_running)


@dataclass
class SubmitResult:
    """``request`` as sent (or, with dry_run, as it would be); ``staged`` the local locations
    and where they went, with ``uploaded`` the files actually uploaded (keys); ``record`` the
    last DescribeTrainingJob (None without waiting); ``interrupted`` after a Ctrl-C."""

    request: dict[str, Any]
    staged: list[StagedLocation] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    arn: str | None = None
    record: dict[str, Any] | None = None
    interrupted: bool = False

    @property
    def name(self) -> str:
        return str(self.request.get("TrainingJobName", ""))
