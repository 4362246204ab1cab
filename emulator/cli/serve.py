"""`emulator serve`: SageMaker's API on a local port (the server lives in emulator.server)."""

from __future__ import annotations

import dataclasses
import shlex
import signal
import sys
from typing import Any

import click

from emulator.cli.flags import job_machine_options
from emulator.errors import EmulatorError
from emulator.run.options import RunOptions

EXIT_INTERRUPTED = 130


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on (0: a free one).",
)
@click.option(
    "--s3/--no-s3",
    "embedded_s3",
    default=False,
    show_default=True,
    help="Start an embedded S3-compatible store (SeaweedFS) for the SDK and the jobs.",
)
@click.option(
    "--max-concurrent-jobs",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    metavar="N",
    help="Jobs that run at once; more wait (InProgress, Starting).",
)
@click.option(
    "--auth",
    metavar="ACCESS_KEY_ID:SECRET",
    envvar="EMULATOR_SERVE_AUTH",
    help=(
        "Require requests signed (SigV4) with this key; needed with a non-loopback --host "
        "(or EMULATOR_SERVE_AUTH, kept out of `ps`)."
    ),
)
@job_machine_options
def serve(
    host: str,
    port: int,
    embedded_s3: bool,
    max_concurrent_jobs: int,
    auth: str | None,
    machine: RunOptions,
) -> None:
    """Serve SageMaker's training-job API, CloudWatch Logs, STS and IAM on one local port, so
    boto3, the AWS CLI and the SageMaker Python SDK run their jobs here, unchanged.

    When ready it prints `export NAME=VALUE` lines (the endpoint variables a client needs),
    then a line starting with `#`; its own messages go to stderr. Ctrl-C or SIGTERM stops
    every running job (Stopped, artifacts packed), removes everything and exits 130.

    \b
    Examples:
      emulator serve --port 8080 --s3
      emulator serve --host 0.0.0.0 --auth AKIDEXAMPLE:secret
    """
    from emulator.server.auth import parse_auth_option
    from emulator.server.serve import ServeOptions, Server

    if embedded_s3 and click.get_current_context().params["s3_endpoint_url"]:
        raise EmulatorError("give --s3 (the embedded store) or --s3-endpoint-url, not both")
    options = ServeOptions(
        host=host,
        port=port,
        s3=embedded_s3,
        max_concurrent_jobs=max_concurrent_jobs,
        auth=parse_auth_option(auth) if auth else None,
        run=dataclasses.replace(machine, notice=_notice),
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with Server(options, _notice) as server:
            for name, value in server.exports().items():
                click.echo(f"export {name}={shlex.quote(value)}")
            click.echo(f"# emulator serve: ready on {server.url}; Ctrl-C stops it")
            sys.stdout.flush()
            server.serve_forever()
    except KeyboardInterrupt:
        _notice("stopped: every job was stopped and cleaned up")
        sys.exit(EXIT_INTERRUPTED)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _notice(message: str) -> None:
    click.echo(f"emulator serve: {message}", err=True)
