"""The `emulator` command: thin click commands over the library, rendered with rich.

Exit status: 0 Completed, 1 Failed, 2 invalid request / usage / environment problem,
3 Stopped (MaxRuntimeExceeded or stop), 130 interrupted (after cleanup).
"""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from emulator.cleanup.prune import prune_leftovers
from emulator.cli.render import RichProgress, print_summary
from emulator.config import s3_settings_from_flags
from emulator.errors import EmulatorError, RequestInvalid
from emulator.plan.hosts import parse_gpus
from emulator.request.build import Overrides, build_request, load_request, split_pair
from emulator.request.validation import parse_request, validate_request
from emulator.run.job import DEFAULT_STOP_GRACE_SECONDS, RunOptions, run_training_job
from emulator.state.store import JobStore, default_home, process_alive

EXIT_FOR_STATUS = {"Completed": 0, "Failed": 1, "Stopped": 3}
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

stderr = Console(stderr=True, highlight=False)


def fail(message: str) -> None:
    # Messages carry the user's text (paths, patterns like [a-z]): never read as rich markup.
    stderr.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    sys.exit(EXIT_USAGE)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sagemaker-training-emulator")
def main() -> None:
    """Run SageMaker training jobs on the local Docker engine, exactly as SageMaker runs them."""


def _pairs(values: tuple[str, ...], flag: str) -> list[tuple[str, str]]:
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


@main.command()
@click.argument("request_file", required=False, metavar="[REQUEST.json]")
@click.option("--image", help="TrainingImage (must be present locally; never pulled).")
@click.option("--entrypoint", multiple=True, help="ContainerEntrypoint item (repeatable).")
@click.option("--arg", "arguments", multiple=True, help="ContainerArguments item (repeatable).")
@click.option(
    "--input-mode", type=click.Choice(["File", "Pipe", "FastFile"]), help="TrainingInputMode."
)
@click.option("--channel", multiple=True, metavar="NAME=URI", help="Input channel (repeatable).")
@click.option("--hyperparameter", multiple=True, metavar="K=V", help="HyperParameters entry.")
@click.option("--env", multiple=True, metavar="K=V", help="Environment entry (repeatable).")
@click.option("--metric", multiple=True, metavar="NAME=REGEX", help="MetricDefinitions entry.")
@click.option("--output", help="S3OutputPath: a local path, file:// or s3:// URI.")
@click.option("--job-name", help="TrainingJobName (default: <image>-<timestamp>).")
@click.option("--max-runtime", type=int, metavar="SECONDS", help="MaxRuntimeInSeconds.")
@click.option("--instance-type", help="ResourceConfig.InstanceType (ml.* or local).")
@click.option("--instance-count", type=int, help="ResourceConfig.InstanceCount.")
@click.option(
    "--stop-grace",
    type=click.FloatRange(min=0),
    callback=_finite,
    default=DEFAULT_STOP_GRACE_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="Time between SIGTERM and SIGKILL when the job is stopped.",
)
@click.option(
    "--gpus",
    callback=_gpus,
    metavar="N|all",
    help="GPUs per host, replacing the instance type's (0: run without GPUs).",
)
@click.option(
    "--apply-instance-limits",
    is_flag=True,
    help="Limit each container to its instance type's vCPUs and memory.",
)
@click.option(
    "--allow-sensitive-paths",
    is_flag=True,
    help="Allow channels, checkpoints and output in ~/.ssh, ~/.aws, /etc, ... (see docs).",
)
@click.option(
    "--s3-endpoint-url",
    metavar="URL",
    help="S3-compatible server to use instead of AWS (default: AWS_ENDPOINT_URL_S3).",
)
@click.option("--profile", help="AWS profile for S3 access (default: AWS_PROFILE).")
@click.option("--region", help="AWS region: S3 client, job ARN and the container's AWS_REGION.")
@click.option(
    "--pass-aws-credentials",
    is_flag=True,
    help="Give the containers your AWS credentials (never with EnableNetworkIsolation).",
)
@click.option("--replace", is_flag=True, help="Discard an earlier finished job of the same name.")
@click.option("--json", "as_json", is_flag=True, help="Print only the job record, as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display and no status lines.")
def run(
    request_file: str | None,
    image: str | None,
    entrypoint: tuple[str, ...],
    arguments: tuple[str, ...],
    input_mode: str | None,
    channel: tuple[str, ...],
    hyperparameter: tuple[str, ...],
    env: tuple[str, ...],
    metric: tuple[str, ...],
    output: str | None,
    job_name: str | None,
    max_runtime: int | None,
    instance_type: str | None,
    instance_count: int | None,
    stop_grace: float,
    gpus: int | None,
    apply_instance_limits: bool,
    allow_sensitive_paths: bool,
    s3_endpoint_url: str | None,
    profile: str | None,
    region: str | None,
    pass_aws_credentials: bool,
    replace: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Run a training job to the end and report it as DescribeTrainingJob would.

    REQUEST.json is a CreateTrainingJob request (the boto3 shape; '-' reads stdin); flags
    build a job without one, or override its members. Relative local paths in the file
    resolve against the file's directory. Container logs go to stdout (stderr with --json),
    prefixed with the host ([algo-2]) when the job has several.

    Instance types with GPUs ask for them (Docker device requests); where the engine has
    none the job is refused before it starts unless --gpus 0. Channels, checkpoints and
    output may not expose ~/.aws, ~/.ssh, ~/.docker, ~/.gnupg, ~/.kube, /etc, /proc, /sys,
    /dev or the Docker socket (nor be / or a folder holding them) without
    --allow-sensitive-paths.

    S3 is reached as boto3 reaches it (AWS_* variables, profiles); the containers get no
    AWS credentials unless --pass-aws-credentials.

    \b
    Examples:
      emulator run request.json
      emulator run --image my-training:latest --channel train=./data/train \\
          --hyperparameter epochs=3 --metric loss='loss=([0-9.]+)'
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        s3 = s3_settings_from_flags(endpoint_url=s3_endpoint_url, profile=profile, region=region)
        base, base_dir = load_request(request_file) if request_file else (None, Path.cwd())
        flags = Overrides(
            image=image,
            entrypoint=list(entrypoint),
            arguments=list(arguments),
            input_mode=input_mode,
            channels=_pairs(channel, "--channel"),
            hyperparameters=_pairs(hyperparameter, "--hyperparameter"),
            environment=_pairs(env, "--env"),
            metrics=_pairs(metric, "--metric"),
            output=output,
            job_name=job_name,
            max_runtime=max_runtime,
            instance_type=instance_type,
            instance_count=instance_count,
        ).resolved_against(Path.cwd())
        if base is None and image is None:
            fail("give a REQUEST.json or at least --image (see `emulator run --help`)")
        request = build_request(base, flags, str(default_home() / "output"))
        options = RunOptions(
            base_dir=base_dir,
            replace=replace,
            stop_grace_seconds=stop_grace,
            gpus=gpus,
            apply_instance_limits=apply_instance_limits,
            allow_sensitive_paths=allow_sensitive_paths,
            region=region,
            s3=s3,
            pass_aws_credentials=pass_aws_credentials,
        )
        record = _run(request, options, as_json, quiet)
    except EmulatorError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        stderr.print("Interrupted: the job was stopped and cleaned up.")
        sys.exit(EXIT_INTERRUPTED)
    if as_json:
        click.echo(json.dumps(record, indent=2))
    elif not quiet:
        print_summary(stderr, record)
    sys.exit(EXIT_FOR_STATUS.get(record["TrainingJobStatus"], 1))


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM to the emulator stops the job like Ctrl-C: nothing is left behind."""
    raise KeyboardInterrupt


def _run(
    request: dict[str, Any], options: RunOptions, as_json: bool, quiet: bool
) -> dict[str, Any]:
    spec = parse_request(request)  # RequestInvalid before anything is shown or started
    log_console = Console(file=sys.stderr if as_json else sys.stdout, highlight=False)
    multi_host = len(spec.resources.hosts()) > 1

    def log_sink(host: str, line: str) -> None:
        prefix = f"[{host}] " if multi_host else ""
        log_console.out(prefix + line, highlight=False)

    def notice(message: str) -> None:
        if not quiet:
            stderr.print(Text(message, style="dim"), soft_wrap=True)

    options.log_sink = log_sink
    options.notice = notice
    if not quiet and stderr.is_terminal:
        with RichProgress(stderr) as progress:
            options.progress = progress
            return run_training_job(spec, options)
    return run_training_job(spec, options)


@main.command()
@click.argument("request_file", metavar="REQUEST.json")
def validate(request_file: str) -> None:
    """Check a CreateTrainingJob request against the API's rules without running it.

    Prints every problem with its path; exits 0 when the request is valid, 2 otherwise.
    """
    try:
        request, _ = load_request(request_file)
    except EmulatorError as exc:
        fail(str(exc))
    problems = validate_request(request)
    if problems:
        fail(str(RequestInvalid(problems)))
    click.echo(f"{request_file}: valid CreateTrainingJob request")


@main.command()
@click.argument("name")
def describe(name: str) -> None:
    """Print a job's DescribeTrainingJob record as JSON."""
    try:
        click.echo(json.dumps(JobStore().get(name), indent=2))
    except EmulatorError as exc:
        fail(str(exc))


@main.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the summaries as JSON.")
def list_jobs(as_json: bool) -> None:
    """List the jobs of the state directory, newest first."""
    try:
        records = JobStore().all_jobs()
    except EmulatorError as exc:
        fail(str(exc))
    fields = ("TrainingJobName", "TrainingJobStatus", "SecondaryStatus", "CreationTime")
    summaries = [{key: record.get(key) for key in fields} for record in records]
    if as_json:
        click.echo(json.dumps({"TrainingJobSummaries": summaries}, indent=2))
        return
    table = Table("name", "status", "secondary status", "created", box=None)
    for summary in summaries:
        table.add_row(*(str(summary[key]) for key in fields))
    console = Console(highlight=False)
    # Never cut a name or a time to fit the width: they are meant to be copied.
    needed = console.measure(table, options=console.options.update_width(10_000)).maximum
    if needed > console.width:
        console = Console(highlight=False, width=needed)
    console.print(table)


@main.command()
@click.argument("name")
def stop(name: str) -> None:
    """Stop a running job (SIGTERM, grace period, SIGKILL), as StopTrainingJob does."""
    try:
        store = JobStore()
        record = store.get(name)
        if record["TrainingJobStatus"] not in ("InProgress", "Stopping"):
            fail(f"Training job {name!r} is not running (status {record['TrainingJobStatus']})")
        pid = store.owner_pid(name)
        if not process_alive(pid):  # nothing would ever act on the request
            fail(
                f"the emulator process running training job {name!r} (pid {pid}) is gone; "
                "run `emulator prune` to record the job Failed and remove its leftovers"
            )
        store.request_stop(name)
    except EmulatorError as exc:
        fail(str(exc))
    click.echo(f"Stop requested for {name}; it ends after its grace period at most.")


@main.command()
def prune() -> None:
    """Remove what dead emulator runs left behind: containers, networks, work dirs, FastFile
    mounts and their file system processes. Live emulators' resources are never touched."""
    try:
        removed = prune_leftovers(JobStore())
    except EmulatorError as exc:
        fail(str(exc))
    for line in removed:
        click.echo(f"removed {line}")
    click.echo(f"{len(removed)} leftover(s) removed")


if __name__ == "__main__":
    main()
