"""Reusable click options of the CLI, and the parsers behind them."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from emulator.plan.hosts import parse_gpus
from emulator.request.build import Overrides, split_pair
from emulator.run.options import DEFAULT_STOP_GRACE_SECONDS, PublishedPort, run_options

F = TypeVar("F", bound=Callable[..., Any])


def pairs(values: tuple[str, ...], flag: str) -> list[tuple[str, str]]:
    """``K=V`` flag values as pairs (RequestInvalid naming the flag otherwise)."""
    return [split_pair(value, flag) for value in values]


def _gpus(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_gpus(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix(f"--gpus {value!r}: ")) from exc


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):  # FloatRange lets nan and inf through
        raise click.BadParameter(f"{value} is not a finite number of seconds.")
    return value


def _apply(options: list[Callable[[F], F]], function: F) -> F:
    for option in reversed(options):
        function = option(function)
    return function


def request_options(function: F) -> F:
    """Flags that build a CreateTrainingJob request, or override members of one. The command
    gets them parsed, as one keyword: ``flags`` (an ``Overrides``)."""
    flag_names: set[str] = set()

    @functools.wraps(function)
    def with_flags(*args: Any, **kwargs: Any) -> Any:
        raw = {name: kwargs.pop(name) for name in flag_names}
        return function(*args, flags=request_overrides(raw), **kwargs)

    known = list(getattr(function, "__click_params__", []))
    decorated = _apply(
        [
            click.option(
                "--image", help="TrainingImage (run: must be present locally; never pulled)."
            ),
            click.option(
                "--entrypoint", multiple=True, help="ContainerEntrypoint item (repeatable)."
            ),
            click.option(
                "--arg", "arguments", multiple=True, help="ContainerArguments item (repeatable)."
            ),
            click.option(
                "--input-mode",
                type=click.Choice(["File", "Pipe", "FastFile"]),
                help="TrainingInputMode.",
            ),
            click.option(
                "--channel", multiple=True, metavar="NAME=URI", help="Input channel (repeatable)."
            ),
            click.option(
                "--hyperparameter", multiple=True, metavar="K=V", help="HyperParameters entry."
            ),
            click.option(
                "--env", multiple=True, metavar="K=V", help="Environment entry (repeatable)."
            ),
            click.option(
                "--metric", multiple=True, metavar="NAME=REGEX", help="MetricDefinitions entry."
            ),
            click.option("--output", help="S3OutputPath: a local path, file:// or s3:// URI."),
            click.option("--job-name", help="TrainingJobName (default: <image>-<timestamp>)."),
            click.option("--max-runtime", type=int, metavar="SECONDS", help="MaxRuntimeInSeconds."),
            click.option("--instance-type", help="ResourceConfig.InstanceType (ml.* or local)."),
            click.option("--instance-count", type=int, help="ResourceConfig.InstanceCount."),
            click.option("--managed-spot", is_flag=True, help="EnableManagedSpotTraining: true."),
            click.option(
                "--max-wait", type=int, metavar="SECONDS", help="MaxWaitTimeInSeconds (spot)."
            ),
            click.option(
                "--max-retry-attempts",
                type=int,
                metavar="N",
                help="RetryStrategy.MaximumRetryAttempts.",
            ),
        ],
        cast(F, with_flags),
    )
    # click keeps a command's parameters on the function: ours are those it did not have.
    params: list[click.Parameter] = decorated.__click_params__  # type: ignore[attr-defined]
    flag_names.update(str(param.name) for param in params if param not in known)
    return decorated


def machine_options(function: F) -> F:
    """How the job uses this machine: stop grace, GPUs, limits, sensitive paths."""
    return _apply(
        [
            click.option(
                "--stop-grace",
                type=click.FloatRange(min=0),
                callback=_finite,
                default=DEFAULT_STOP_GRACE_SECONDS,
                show_default=True,
                metavar="SECONDS",
                help="Time between SIGTERM and SIGKILL when the job is stopped.",
            ),
            click.option(
                "--gpus",
                callback=_gpus,
                metavar="N|all",
                help="GPUs per host, replacing the instance type's (0: run without GPUs).",
            ),
            click.option(
                "--apply-instance-limits",
                is_flag=True,
                help="Limit each container to its instance type's vCPUs and memory.",
            ),
            click.option(
                "--allow-sensitive-paths",
                is_flag=True,
                help=(
                    "Allow channels, checkpoints and output in ~/.ssh, ~/.aws, /etc, ... "
                    "(see docs)."
                ),
            ),
        ],
        function,
    )


def s3_options(function: F) -> F:
    """How S3 is reached, and whether the containers get AWS credentials."""
    return _apply(
        [
            click.option(
                "--s3-endpoint-url",
                metavar="URL",
                help="S3-compatible server to use instead of AWS (default: AWS_ENDPOINT_URL_S3).",
            ),
            click.option("--profile", help="AWS profile (default: AWS_PROFILE)."),
            click.option(
                "--region", help="AWS region: S3 client, job ARN and the container's AWS_REGION."
            ),
            click.option(
                "--pass-aws-credentials",
                is_flag=True,
                help=(
                    "Give the containers your AWS credentials (never with EnableNetworkIsolation)."
                ),
            ),
        ],
        function,
    )


def job_machine_options(function: F) -> F:
    """``machine_options`` and ``s3_options`` for a command that runs jobs: the command gets
    them as one keyword, ``machine`` (the RunOptions they make, as ``run_options`` builds it)."""

    @functools.wraps(function)
    def with_machine(*args: Any, **kwargs: Any) -> Any:
        machine = run_options(
            stop_grace=kwargs.pop("stop_grace"),
            gpus=kwargs.pop("gpus"),
            apply_instance_limits=kwargs.pop("apply_instance_limits"),
            allow_sensitive_paths=kwargs.pop("allow_sensitive_paths"),
            s3_endpoint_url=kwargs.pop("s3_endpoint_url"),
            profile=kwargs.pop("profile"),
            region=kwargs.pop("region"),
            pass_aws_credentials=kwargs.pop("pass_aws_credentials"),
        )
        return function(*args, machine=machine, **kwargs)

    return machine_options(s3_options(cast(F, with_machine)))


def debug_options(function: F) -> F:
    """Flags for debugging a container (README "Debugging a container")."""
    return _apply(
        [
            click.option(
                "--shell",
                is_flag=True,
                help="Prepare everything, but algo-1 starts an interactive shell instead.",
            ),
            click.option(
                "--keep",
                is_flag=True,
                help="Keep the exited containers and work dir (see `emulator shell`, `rm`).",
            ),
            click.option(
                "--publish",
                "-p",
                multiple=True,
                metavar="[HOST_PORT:]CONTAINER_PORT",
                help="Publish algo-1's port on 127.0.0.1 (repeatable).",
            ),
            click.option(
                "--code",
                type=click.Path(file_okay=False, path_type=Path),
                metavar="DIR",
                help="Mount DIR read-only at /opt/ml/code (as the SDK's source_dir).",
            ),
            click.option(
                "--watch",
                is_flag=True,
                help="With --code: rerun the job (a new name) when a file under DIR changes.",
            ),
        ],
        function,
    )


def published_ports(values: tuple[str, ...]) -> tuple[PublishedPort, ...]:
    """``--publish`` values, ``[HOST_PORT:]CONTAINER_PORT`` each (Docker's ``-p`` order)."""
    return tuple(_published_port(value) for value in values)


def _published_port(value: str) -> PublishedPort:
    host, _, container = value.rpartition(":")
    try:
        ports = [_port(container), *([_port(host)] if host else [])]
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected [HOST_PORT:]CONTAINER_PORT, ports 1-65535 (e.g. 5678 or "
            "8080:6006)",
            param_hint="--publish",
        ) from None
    return PublishedPort(ports[0], ports[1] if host else None)


def _port(text: str) -> int:
    port = int(text) if text.isdigit() else 0
    if not 1 <= port <= 65535:
        raise ValueError(text)
    return port


def request_overrides(raw: dict[str, Any]) -> Overrides:
    """What ``request_options`` give (`run` and `submit`), parsed; local paths resolved
    against the working directory."""
    return Overrides(
        image=raw["image"],
        entrypoint=list(raw["entrypoint"]),
        arguments=list(raw["arguments"]),
        input_mode=raw["input_mode"],
        channels=pairs(raw["channel"], "--channel"),
        hyperparameters=pairs(raw["hyperparameter"], "--hyperparameter"),
        environment=pairs(raw["env"], "--env"),
        metrics=pairs(raw["metric"], "--metric"),
        output=raw["output"],
        job_name=raw["job_name"],
        max_runtime=raw["max_runtime"],
        instance_type=raw["instance_type"],
        instance_count=raw["instance_count"],
        managed_spot=raw["managed_spot"],
        max_wait=raw["max_wait"],
        max_retry_attempts=raw["max_retry_attempts"],
    ).resolved_against(Path.cwd())
