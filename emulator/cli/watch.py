"""``emulator run --code DIR --watch``: run the job, and rerun it (a new name) whenever a file
under DIR changes, until Ctrl-C.

The job runs in the main thread, as a plain `emulator run` does: Ctrl-C or SIGTERM stops it
(Stopped, cleaned up) and ends the watch with exit 130. Changes are watched in the background
(run/codewatch.py, debounced); one while a job runs asks it to stop through the store, as
`emulator stop` does (SIGTERM, the grace period, SIGKILL: it ends Stopped with nothing left),
and the next job starts as soon as it has ended. A job that ends by itself is reported and the
watch waits for the next change. Names: the request's (or the default) name plus ``-1``,
``-2``, ... (names already in the store are skipped).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from emulator import api
from emulator.errors import EmulatorError, JobNotFound
from emulator.plan.code import check_code_dir
from emulator.request.validation import parse_request
from emulator.run.codewatch import CodeWatcher, rerun_names
from emulator.run.options import RunOptions

# Without --stop-grace a rerun waits this long at most for the old job: a script as the
# container's PID 1 ignores SIGTERM unless it handles it, and 120 s per edit is no loop.
WATCH_STOP_GRACE_SECONDS = 5.0
EXIT_FOR_STATUS = {"Completed": 0, "Failed": 1, "Stopped": 3}
EXIT_INTERRUPTED = 130
RETRY_SECONDS = 0.2  # how often a stop is retried while the job is not registered yet
IDLE_POLL_SECONDS = 0.5  # the main thread's wait for a change, so Ctrl-C lands at once

RunJob = Callable[[dict[str, Any], RunOptions], dict[str, Any]]


def watch_code(
    request: dict[str, Any],
    options: RunOptions,
    run_job: RunJob,
    *,
    shell: bool,
    as_json: bool,
    quiet: bool,
) -> NoReturn:
    """Run ``request`` with ``run_job`` (the CLI's run, output and all) again on every change
    of ``options.code_dir``; return never (exit 130 after Ctrl-C)."""
    if options.code_dir is None:
        raise EmulatorError("--watch needs --code DIR: the directory whose changes rerun the job")
    if shell:
        raise EmulatorError("--watch and --shell do not go together: a change would end the shell")
    if as_json:
        raise EmulatorError("--watch and --json do not go together: a watch prints many records")
    code_dir = check_code_dir(options.code_dir, allow_sensitive_paths=options.allow_sensitive_paths)
    spec = parse_request(request)  # RequestInvalid before anything is watched or run
    context = click.get_current_context(silent=True)
    source = context.get_parameter_source("stop_grace") if context is not None else None
    if source is click.core.ParameterSource.DEFAULT:
        options = replace(options, stop_grace_seconds=WATCH_STOP_GRACE_SECONDS)
    console = Console(stderr=True, highlight=False)
    loop = _WatchLoop(request, options, run_job, console, quiet)
    names = rerun_names(spec.name, loop.taken)
    with CodeWatcher(code_dir).start(loop.say) as watcher:
        loop.say(f"Watching {code_dir} for changes (Ctrl-C ends the watch)")
        try:
            loop.run(watcher, names)
        except KeyboardInterrupt:
            what = "its containers and work dir kept" if options.keep else "cleaned up"
            stopped = f"; {loop.running} was stopped and {what}" if loop.running else ""
            loop.say(f"Interrupted: the watch ended{stopped}")
    sys.exit(EXIT_INTERRUPTED)


class _WatchLoop:
    def __init__(
        self,
        request: dict[str, Any],
        options: RunOptions,
        run_job: RunJob,
        console: Console,
        quiet: bool,
    ) -> None:
        self.request = request
        self.options = options
        self.run_job = run_job
        self.console = console
        self.quiet = quiet
        self.running: str | None = None  # the job being run, if any

    def say(self, message: str) -> None:
        self.console.print(Text.assemble(("watch:", "bold cyan"), " ", message), soft_wrap=True)

    def taken(self, name: str) -> bool:
        try:
            api.describe(name, home=self.options.home)
        except JobNotFound:
            return False
        return True

    def run(self, watcher: CodeWatcher, names: Iterator[str]) -> None:
        """Job after job until Ctrl-C (KeyboardInterrupt, after the running job's cleanup)."""
        first = True
        while True:
            name = next(names)
            if not first:
                self.say(f"starting {name}")
            stopper = _StopOnChange(watcher, name, self.options.home, self.say)
            stopper.start()
            self.running = name
            try:
                record = self.run_job({**self.request, "TrainingJobName": name}, self.options)
            except EmulatorError as exc:
                if first:  # the setup is wrong (no engine, image, data): no loop fixes that
                    raise
                self.console.print(Text.assemble(("error:", "bold red"), " ", str(exc)))
                record = None
            finally:
                changed = stopper.finish()
            self.running = None
            first = False
            if record is not None:
                self._report(record)
            if not changed:
                self.say(f"waiting for a change under {watcher.root}")
                changed = _wait_for_change(watcher)
            self.say(f"changed: {', '.join(changed)}")

    def _report(self, record: dict[str, Any]) -> None:
        status = record["TrainingJobStatus"]
        if not self.quiet:
            from emulator.cli.render import print_resource_use, print_summary

            print_summary(self.console, record)
            use = api.resource_use(record["TrainingJobName"], home=self.options.home)
            print_resource_use(self.console, use)
        code = EXIT_FOR_STATUS.get(status, 1)
        self.say(f"{record['TrainingJobName']} ended {status} (exit code {code})")


def _wait_for_change(watcher: CodeWatcher) -> list[str]:
    """The next change, waited for in short slices: Ctrl-C interrupts the main thread here."""
    while True:
        changed = watcher.next_change(timeout=IDLE_POLL_SECONDS)
        if changed:
            return changed


class _StopOnChange:
    """While one job runs: the first change under the code dir asks it to stop, as `emulator
    stop` does (retried until the job is registered; its preflight may still be running)."""

    def __init__(
        self, watcher: CodeWatcher, name: str, home: Path | None, say: Callable[[str], None]
    ) -> None:
        self._watcher = watcher
        self._name = name
        self._home = home
        self._say = say
        self._done = threading.Event()
        self._changed: list[str] = []
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> list[str]:
        """The job has ended: the thread ends too; the change that stopped it, if any."""
        self._done.set()
        self._thread.join()
        return self._changed

    def _run(self) -> None:
        while not self._done.is_set():
            changed = self._watcher.next_change(timeout=RETRY_SECONDS)
            if changed:
                self._changed = changed
                break
        if not self._changed:
            return
        self._say(f"{', '.join(self._changed)} changed: stopping {self._name}")
        while not self._done.is_set():
            try:
                api.stop(self._name, home=self._home)
                return
            except EmulatorError:  # not registered yet, or already ending by itself
                self._done.wait(RETRY_SECONDS)
