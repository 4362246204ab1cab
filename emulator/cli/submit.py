"""`emulator submit`: the request `emulator run` would run, sent to SageMaker."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from emulator import api
from emulator.cli.flags import request_options, s3_options
from emulator.config import default_home, s3_settings_from_flags
from emulator.request.build import Overrides, build_request, load_request

if TYPE_CHECKING:
    from emulator.submit.options import SubmitOptions, SubmitResult

# The submit package (and boto3's SageMaker client) is imported when the command runs: every
# other command's start never pays for it.
DEFAULT_POLL_SECONDS = 5.0  # emulator.submit.options' default, checked by a test

EXIT_FOR_STATUS = {"Completed": 0, "Failed": 1, "Stopped": 3}
EXIT_INTERRUPTED = 130


@click.command()
@click.argument("request_file", required=False, metavar="[REQUEST.json]")
@request_options
@s3_options
@click.option(
    "--staging",
    metavar="s3://BUCKET/PREFIX",
    help="Where local channels, manifests and checkpoints are uploaded (content-addressed) "
    "and local outputs mapped.",
)
@click.option("--role", metavar="ARN", help="RoleArn: the IAM role SageMaker assumes.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Follow the job to its end (statuses, logs, metrics), or print its ARN and exit.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the request that would be sent; upload nothing."
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_POLL_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="Time between DescribeTrainingJob calls while waiting.",
)
# Accepted only to be refused with a reason: they choose what the local engine does.
@click.option("--gpus", hidden=True)
def submit(
    request_file: str | None,
    flags: Overrides,
    s3_endpoint_url: str | None,
    profile: str | None,
    region: str | None,
    pass_aws_credentials: bool,
    staging: str | None,
    role: str | None,
    wait: bool,
    dry_run: bool,
    poll_interval: float,
    gpus: str | None,
) -> None:
    """Submit a training job to SageMaker: the same request `emulator run` builds, from
    REQUEST.json and the same flags, validated with the same rules.

    What runs only on this machine is refused before anything is uploaded (local instance
    types, --gpus, local paths without --staging, a missing RoleArn without --role). Local
    channels, manifests and checkpoints are uploaded under --staging, keyed by content (an
    unchanged file is not uploaded again), local outputs go to <staging>/output, and the
    request's URIs are rewritten. The SageMaker, CloudWatch Logs and S3 clients take the usual
    AWS settings (AWS_ENDPOINT_URL_SAGEMAKER, AWS_PROFILE or --profile, --region).

    With --wait (the default) the status transitions and every host's CloudWatch log lines are
    printed as `emulator run` prints them, then the final metrics; the exit status is `run`'s
    (0 Completed, 1 Failed, 3 Stopped). Ctrl-C asks whether to stop the remote job.

    \b
    Examples:
      emulator submit request.json --staging s3://my-bucket/emulator --dry-run
      emulator submit request.json --staging s3://my-bucket/emulator \\
          --role arn:aws:iam::123456789012:role/SageMakerTraining --instance-type ml.m5.xlarge
    """
    from emulator.cli.main import LogEcho, fail, stderr_console

    base, base_dir = load_request(request_file) if request_file else (None, Path.cwd())
    if base is None and flags.image is None:
        fail("give a REQUEST.json or at least --image (see `emulator submit --help`)")
    request = build_request(base, flags, str(default_home() / "output"))
    from rich.text import Text

    stderr = stderr_console()

    def notice(message: str) -> None:
        stderr.print(Text(message, style="dim"), soft_wrap=True)

    from emulator.submit.options import SubmitOptions
    from emulator.submit.rewrite import host_count

    options = SubmitOptions(
        staging=staging,
        role=role,
        wait=wait,
        dry_run=dry_run,
        base_dir=base_dir,
        s3=s3_settings_from_flags(endpoint_url=s3_endpoint_url, profile=profile, region=region),
        profile=profile,
        region=region,
        poll_seconds=poll_interval,
        gpus=-1 if gpus is not None else None,
        pass_aws_credentials=pass_aws_credentials,
        notice=notice,
        log_sink=LogEcho(sys.stdout, prefix_hosts=host_count(request) > 1),
        on_interrupt=_ask_to_stop,
    )
    try:
        result = _submit(request, options)
    except KeyboardInterrupt:
        name = request.get("TrainingJobName")
        stderr.print(
            f"Interrupted. If the training job {name} was created it keeps running; "
            f"`aws sagemaker stop-training-job --training-job-name {name}` stops it.",
            markup=False,
            soft_wrap=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    if dry_run:
        _print_plan(result, notice)
        click.echo(json.dumps(result.request, indent=2))
        return
    if not wait or result.record is None:
        click.echo(f"{result.name}\t{result.arn}")
        return
    from emulator.cli.render import print_summary

    print_summary(stderr, _summary_record(result.record))
    if result.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_FOR_STATUS.get(result.record.get("TrainingJobStatus", ""), 1))


def _submit(request: dict[str, Any], options: SubmitOptions) -> SubmitResult:
    """With a terminal, uploads show progress bars."""
    from emulator.cli.main import stderr_console

    stderr = stderr_console()
    if options.dry_run or not stderr.is_terminal:
        return api.submit(request, options)
    import dataclasses

    from emulator.cli.render import RichProgress

    with RichProgress(stderr) as progress:
        return api.submit(request, dataclasses.replace(options, progress=progress))


def _ask_to_stop(name: str) -> bool:
    """Ctrl-C while waiting: stop the remote job? Without a terminal to ask, leave it."""
    if not sys.stdin.isatty():
        return False
    try:
        return click.confirm(
            f"\nStop the remote training job {name} (StopTrainingJob)? No leaves it running",
            default=False,
            err=True,
        )
    except click.Abort:  # a second Ctrl-C at the prompt
        return False


def _print_plan(result: SubmitResult, notice: Any) -> None:
    for staged in result.staged:
        if staged.files:
            notice(
                f"would upload {len(staged.files)} file(s), {staged.size} bytes, of "
                f"{staged.member} {staged.origin} to {staged.uri} (unless already there)"
            )
        else:
            notice(f"{staged.member}: {staged.origin} -> {staged.uri}")


def _summary_record(record: dict[str, Any]) -> dict[str, Any]:
    """The fields ``print_summary`` reads, present whatever the service answered."""
    return {"SecondaryStatus": record.get("TrainingJobStatus", ""), **record}
