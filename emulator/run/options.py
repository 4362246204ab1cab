"""How to run a job: the options the CLI's flags and the Python API share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emulator.config import S3Settings, s3_settings_from_flags
from emulator.plan.credentials import ContainerS3
from emulator.progress import NO_PROGRESS, Progress

DEFAULT_STOP_GRACE_SECONDS = 120.0

LogSink = Callable[[str, str], None]  # (host, line)
Notice = Callable[[str], None]


def no_log(host: str, line: str) -> None:
    """The default log sink: lines go to the job's log files only."""


def no_notice(message: str) -> None:
    """The default notice sink: the library says nothing."""


@dataclass(frozen=True)
class PublishedPort:
    """One of algo-1's container ports published on 127.0.0.1 (``--publish``)."""

    container_port: int
    host_port: int | None = None  # None: a free port, chosen by the engine


@dataclass(frozen=True)
class RunOptions:
    """How to run a job; everything has a default suitable for the Python API.

    Frozen: a job never changes the options it was given (``dataclasses.replace`` makes a
    variant)."""

    home: Path | None = None  # state dir; default: EMULATOR_HOME or the user's state dir
    base_dir: Path | None = None  # relative local paths of the request resolve here (cwd)
    replace: bool = False  # discard an earlier finished job of the same name
    stop_grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS
    # The job's region (its ARN, the containers' AWS_REGION); default: s3.region, then
    # config.resolve_region. It is also the S3 client's region when s3 names none.
    region: str | None = None
    # How the emulator reaches S3 (endpoint, profile, region, retries: config.S3Settings),
    # as the CLI's --s3-endpoint-url/--profile/--region; None = from the environment
    # (AWS_* variables, config files). Passed down to every S3 user of the job (channels,
    # the FastFile child, outputs, checkpoints, --pass-aws-credentials); os.environ is
    # never written.
    s3: S3Settings | None = None
    work_root: Path | None = None  # where per-job work dirs go; default: the temp dir
    log_sink: LogSink = field(default=no_log)
    notice: Notice = field(default=no_notice)
    progress: Progress = field(default=NO_PROGRESS)
    # GPUs per host: None = as the instance type has (plan/hosts.py), 0 = none, -1 = all.
    gpus: int | None = None
    # Give each container its instance type's vCPUs and memory as limits (plan/hosts.py).
    apply_instance_limits: bool = False
    # Let channels, checkpoints and output use sensitive host paths (plan/safety.py).
    allow_sensitive_paths: bool = False
    # Give the containers the AWS credentials boto3 resolves; never with network isolation
    # (plan/credentials.py).
    pass_aws_credentials: bool = False
    # An S3 store of the emulator's own (the embedded store of `emulator serve --s3`): every
    # container gets its endpoint (S3_ENDPOINT_URL, AWS_ENDPOINT_URL_S3) and its own local
    # credentials, never the user's; then pass_aws_credentials changes nothing
    # (plan/credentials.py). ``s3`` is how the emulator itself reaches the same store.
    container_s3: ContainerS3 | None = None
    # Debugging (README "Debugging a container"):
    # leave the exited containers and the work dir whatever the ending, labelled as kept
    keep: bool = False
    # algo-1 runs an interactive shell instead of the job's command
    shell: bool = False
    # algo-1's container ports published on 127.0.0.1 only
    publish: tuple[PublishedPort, ...] = ()
    # mounted read-only at /opt/ml/code in every host, as the SDK's source_dir would be
    code_dir: Path | None = None
    # Rehearsing the cloud (README "Rehearsing spot training"): a managed spot job is
    # interrupted at each of these seconds of training time, counted over all its rounds
    interrupt_after: tuple[float, ...] = ()
    # an internal error this many seconds into every attempt's training (RetryStrategy)
    internal_error_after: float | None = None


def run_options(
    *,
    stop_grace: float,
    gpus: int | None,
    apply_instance_limits: bool,
    allow_sensitive_paths: bool,
    s3_endpoint_url: str | None,
    profile: str | None,
    region: str | None,
    pass_aws_credentials: bool,
) -> RunOptions:
    """The RunOptions of `run`'s machine and S3 flags (shared by `run`, `serve` and the
    pytest plugin's ``emulator.run``)."""
    return RunOptions(
        stop_grace_seconds=stop_grace,
        gpus=gpus,
        apply_instance_limits=apply_instance_limits,
        allow_sensitive_paths=allow_sensitive_paths,
        region=region,
        s3=s3_settings_from_flags(endpoint_url=s3_endpoint_url, profile=profile, region=region),
        pass_aws_credentials=pass_aws_credentials,
    )
