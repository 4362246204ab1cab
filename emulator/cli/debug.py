"""`emulator logs` and `emulator exec`, and what `emulator run --shell` changes in the CLI."""

from __future__ import annotations

import os
import sys

import click

from emulator import api
from emulator.errors import EmulatorError

HOST_HELP = "Only this host's lines (algo-1, algo-2, ...)."


@click.command()
@click.argument("name")
@click.option("--host", metavar="algo-N", help=HOST_HELP)
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep printing the lines of a running job as they come, until it ends.",
)
def logs(name: str, host: str | None, follow: bool) -> None:
    """Print a job's container lines (prefixed [algo-N] when it has several hosts).

    With --follow, from another terminal: what is there, then the new lines of a running job
    as its hosts write them, until the job ends (a job not running: its lines, then exit).

    \b
    Examples:
      emulator logs my-job --host algo-2
      emulator logs my-job --follow
    """
    out = sys.stdout
    try:
        for line in api.logs(name, host=host, follow=follow):
            out.write(line + "\n")
            if follow:  # shown as they come, even through a pipe
                out.flush()
        out.flush()
    except BrokenPipeError:  # `emulator logs ... | head`: the reader has seen enough
        _quiet_exit()


def _quiet_exit() -> None:
    """Leave without Python's own complaint about the closed pipe at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)


@click.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.option("--host", metavar="algo-N", help="The host to run in (default: algo-1).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_command(name: str, host: str | None, command: tuple[str, ...]) -> None:
    """Run a command in a running job's host container; exit with its exit status.

    The command follows `--`. Stdin is passed on; a TTY is given when stdin is a terminal.
    A job (or host) not running is refused (exit 2).

    \b
    Examples:
      emulator exec my-job -- nvidia-smi
      emulator exec my-job --host algo-2 -- ls /opt/ml/input/data/train
      emulator exec my-job -- bash
    """
    sys.exit(api.exec_in_job(name, list(command), host=host))


def check_shell(*, as_json: bool) -> None:
    """`run --shell` refuses what cannot go with a shell on the terminal."""
    if as_json:
        raise EmulatorError(
            "--shell and --json do not go together: the shell needs the terminal's stdout"
        )


def no_echo(host: str, line: str) -> None:
    """`run --shell`: algo-1's lines reach the terminal through the shell's own connection,
    the other hosts' go to their log files only (`emulator logs NAME --follow`)."""
