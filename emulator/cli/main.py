"""The `emulator` command: thin click commands over ``emulator.api``, rendered with rich.

Exit status: 0 Completed, 1 Failed, 2 invalid request / usage / environment problem,
3 Stopped (MaxRuntimeExceeded or stop), 130 interrupted (after cleanup).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import importlib
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import click

from emulator import api
from emulator.cli.debug import check_shell, exec_command, logs, no_echo
from emulator.cli.flags import (
    debug_options,
    job_machine_options,
    published_ports,
    request_options,
)
from emulator.cli.rehearsal import rehearsal_options
from emulator.config import default_home
from emulator.errors import EmulatorError, RequestInvalid
from emulator.request.build import Overrides, build_request, load_request
from emulator.run.options import RunOptions

if TYPE_CHECKING:
    from rich.console import Console

# rich, the validator and the job runner are imported where they are used: `emulator
# --version`, `list` and `describe` start in a fraction of the time `run` needs.

# Commands a job never needs, imported when named (or listed by --help), so that `emulator run`
# starts without them: name -> (module, attribute).
LAZY_COMMANDS = {
    "metrics": ("emulator.cli.metrics", "metrics"),
    "rm": ("emulator.cli.kept", "rm"),
    "serve": ("emulator.cli.serve", "serve"),
    "shell": ("emulator.cli.kept", "shell"),
    "submit": ("emulator.cli.submit", "submit"),
}

EXIT_FOR_STATUS = {"Completed": 0, "Failed": 1, "Stopped": 3}
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@functools.cache
def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def fail(message: str) -> NoReturn:
    from rich.text import Text

    # Messages carry the user's text (paths, patterns like [a-z]): never read as rich markup.
    stderr_console().print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    sys.exit(EXIT_USAGE)


class EmulatorGroup(click.Group):
    """Every command's EmulatorError becomes one clear line on stderr and exit 2."""

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        try:
            return super().main(args, *rest, **kwargs)
        finally:
            if args is None:  # the program's own command line: the process ends now
                # The interpreter's last garbage collections would walk every object of the
                # modules loaded (30-50 ms after a job); frozen, they are left to the exit.
                # Our files are closed by then, and the standard streams are flushed anyway.
                gc.freeze()

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EmulatorError as exc:
            fail(str(exc))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module, attribute = LAZY_COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=EmulatorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sagemaker-training-emulator")
def main() -> None:
    """Run SageMaker training jobs on the local Docker engine, exactly as SageMaker runs them."""


@main.command()
@click.argument("request_file", required=False, metavar="[REQUEST.json]")
@request_options
@job_machine_options
@debug_options
@rehearsal_options
@click.option("--replace", is_flag=True, help="Discard an earlier finished job of the same name.")
@click.option("--json", "as_json", is_flag=True, help="Print only the job record, as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display and no status lines.")
def run(
    request_file: str | None,
    flags: Overrides,
    machine: RunOptions,
    shell: bool,
    keep: bool,
    publish: tuple[str, ...],
    code: Path | None,
    watch: bool,
    interrupt_after: tuple[float, ...],
    inject_internal_error_after: float | None,
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
    base, base_dir = load_request(request_file) if request_file else (None, Path.cwd())
    if base is None and flags.image is None:
        fail("give a REQUEST.json or at least --image (see `emulator run --help`)")
    request = build_request(base, flags, str(default_home() / "output"))
    options = dataclasses.replace(
        machine,
        base_dir=base_dir,
        replace=replace,
        keep=keep,
        shell=shell,
        publish=published_ports(publish),
        code_dir=code.resolve() if code is not None else None,
        interrupt_after=interrupt_after,
        internal_error_after=inject_internal_error_after,
    )
    if shell:  # algo-1's shell is on this terminal (cli/debug.py)
        check_shell(as_json=as_json)
    if watch:  # reruns on every change under --code until Ctrl-C (cli/watch.py)
        from emulator.cli.watch import watch_code

        rerun = functools.partial(_run, as_json=False, quiet=quiet)
        watch_code(request, options, rerun, shell=shell, as_json=as_json, quiet=quiet)
    try:
        record = _run(request, options, as_json, quiet)
    except KeyboardInterrupt:
        what = "its containers and work dir kept" if keep else "cleaned up"
        stderr_console().print(f"Interrupted: the job was stopped and {what}.")
        sys.exit(EXIT_INTERRUPTED)
    if as_json:
        click.echo(json.dumps(record, indent=2))
    elif not quiet:
        from emulator.cli.render import print_resource_use, print_summary

        print_summary(stderr_console(), record)
        use = api.resource_use(record["TrainingJobName"], home=options.home)
        print_resource_use(stderr_console(), use)
    sys.exit(EXIT_FOR_STATUS.get(record["TrainingJobStatus"], 1))


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM to the emulator stops the job like Ctrl-C: nothing is left behind."""
    raise KeyboardInterrupt


class LogEcho:
    """The containers' lines, as they are, to a text stream: never through rich (a job may
    print millions), gathered and written at once by ``flush``, which the job's log reader
    calls after each batch of lines (so even an unbuffered stdout, PYTHONUNBUFFERED, costs
    one write per batch, not one per line)."""

    def __init__(self, stream: TextIO, prefix_hosts: bool) -> None:
        self._stream = stream
        self._prefix_hosts = prefix_hosts
        self._pending: list[str] = []
        self._lock = threading.Lock()  # hosts' consumer threads share the stream

    def __call__(self, host: str, line: str) -> None:
        text = f"[{host}] {line}\n" if self._prefix_hosts else f"{line}\n"
        with self._lock:
            self._pending.append(text)

    def flush(self) -> None:
        with self._lock:
            text = "".join(self._pending)
            self._pending.clear()
            if text:
                self._stream.write(text)
            self._stream.flush()


def _run(
    request: dict[str, Any], options: RunOptions, as_json: bool, quiet: bool
) -> dict[str, Any]:
    from emulator.request.validation import parse_request

    spec = parse_request(request)  # RequestInvalid before anything is shown or started
    multi_host = len(spec.resources.hosts()) > 1
    log_sink = LogEcho(sys.stderr if as_json else sys.stdout, prefix_hosts=multi_host)
    if options.shell:  # the shell's output reaches the terminal directly
        log_sink = no_echo  # type: ignore[assignment]
    if quiet:  # nothing is rendered: rich is not even imported (25-30 ms)
        return api.run(spec, dataclasses.replace(options, log_sink=log_sink, notice=_silent))

    from rich.text import Text

    from emulator.cli.render import RichProgress

    stderr = stderr_console()

    def notice(message: str) -> None:
        stderr.print(Text(message, style="dim"), soft_wrap=True)

    options = dataclasses.replace(options, log_sink=log_sink, notice=notice)
    if stderr.is_terminal and not options.shell:  # no progress display over a shell
        with RichProgress(stderr) as progress:
            return api.run(spec, dataclasses.replace(options, progress=progress))
    return api.run(spec, options)


def _silent(message: str) -> None:
    """The notices of a --quiet run: none."""


@main.command()
@click.argument("request_file", metavar="REQUEST.json")
def validate(request_file: str) -> None:
    """Check a CreateTrainingJob request against the API's rules without running it.

    Prints every problem with its path; exits 0 when the request is valid, 2 otherwise.
    """
    request, _ = load_request(request_file)
    problems = api.validate(request)
    if problems:
        fail(str(RequestInvalid(problems)))
    click.echo(f"{request_file}: valid CreateTrainingJob request")


@main.command()
@click.argument("name")
def describe(name: str) -> None:
    """Print a job's DescribeTrainingJob record as JSON."""
    click.echo(json.dumps(api.describe(name), indent=2))


@main.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the summaries as JSON.")
def list_jobs(as_json: bool) -> None:
    """List the jobs of the state directory, newest first."""
    fields = ("TrainingJobName", "TrainingJobStatus", "SecondaryStatus", "CreationTime")
    summaries = [{key: record.get(key) for key in fields} for record in api.list_jobs()]
    kept = api.kept_jobs()  # --keep: SageMaker's fields stay, "Kept": true is added
    for summary in summaries:
        if summary["TrainingJobName"] in kept:
            summary["Kept"] = True
    if as_json:
        click.echo(json.dumps({"TrainingJobSummaries": summaries}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "status", "secondary status", "created", box=None)
    if kept:  # a column only when a job was kept
        table.add_column("kept")
    for summary in summaries:
        marker = ["kept" if summary.get("Kept") else ""] if kept else []
        table.add_row(*(str(summary[key]) for key in fields), *marker)
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
    api.stop(name)
    click.echo(f"Stop requested for {name}; it ends after its grace period at most.")


@main.command()
@click.option("--kept", is_flag=True, help="Remove every kept job's containers and work dir.")
def prune(kept: bool) -> None:
    """Remove what dead emulator runs left behind: containers, networks, work dirs, FastFile
    mounts and their file system processes. Live emulators' resources are never touched, nor
    what jobs run with --keep kept (that is --kept's: see `emulator rm`)."""
    removed = api.prune(kept=kept)
    for line in removed:
        click.echo(f"removed {line}")
    click.echo(f"{len(removed)} {'kept resource' if kept else 'leftover'}(s) removed")


main.add_command(logs)
main.add_command(exec_command)

if __name__ == "__main__":
    main()
