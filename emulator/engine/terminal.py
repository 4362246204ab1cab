"""The user's terminal connected to a container, through the docker CLI as a subprocess.

``run_interactive`` runs one docker CLI command on the terminal to its end (``emulator exec``,
``emulator shell``); ``TerminalContainer`` is a job host started on the terminal while the job
goes on (``emulator run --shell``).

Raw mode, window resizes and the signals typed at the keyboard are the docker CLI's job: it
does them right on every platform, and it honours DOCKER_HOST like docker-py. The emulator
only builds its arguments and waits for it, letting the child own the terminal: while it
runs, SIGINT and SIGQUIT typed at the terminal do nothing in the emulator (with a TTY the
CLI puts the terminal in raw mode and forwards Ctrl-C to the container's shell; without one,
the whole process group gets them and the CLI forwards what it should).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from emulator.engine.client import EngineClient
from emulator.engine.container import (
    EXIT_REMOVED,
    Container,
    Exit,
    OutputStream,
    StartFailed,
    start_failure,
)
from emulator.engine.errors import Failure, Kind, engine_call
from emulator.errors import EnvironmentProblem

DOCKER_CLI = "docker"
FALLBACK_CLI = "/usr/local/bin/docker"
CLI_EXIT_SECONDS = 10.0  # the docker CLI ends with its container; never wait longer
CLI_SETTLE_SECONDS = 2.0  # once its container has exited, for the terminal to be restored


def docker_cli() -> str:
    """The docker CLI's path; EnvironmentProblem when there is none."""
    found = shutil.which(DOCKER_CLI) or (FALLBACK_CLI if os.access(FALLBACK_CLI, os.X_OK) else None)
    if found is None:
        raise EnvironmentProblem(
            "The docker CLI is not installed (no `docker` on PATH): an interactive "
            "terminal in a container needs it"
        )
    return found


def stdin_is_terminal() -> bool:
    """Whether the emulator's stdin is a terminal (then ``-t`` is asked for)."""
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, ValueError, OSError):
        return False


def terminal_flags(*, interactive: bool = True, tty: bool | None = None) -> list[str]:
    """``-i`` (stdin kept open) and ``-t`` (a pseudo-terminal) as the docker CLI takes them;
    ``-t`` only when ``tty`` (by default: when stdin is a terminal)."""
    flags = ["-i"] if interactive else []
    if stdin_is_terminal() if tty is None else tty:
        flags.append("-t")
    return flags


def run_interactive(args: Sequence[str]) -> int:
    """Run ``docker ARGS...`` with the user's stdin, stdout and stderr, and return its exit
    status (the container command's for ``exec``/``start -ai``/``run``; a signal's death as
    128 + the signal, as a shell reports it). The caller adds ``-i``/``-t``
    (``terminal_flags``)."""
    command = [docker_cli(), *args]
    try:
        with _terminal_belongs_to_child():
            process = subprocess.Popen(command)  # inherits stdin/stdout/stderr
            code = process.wait()
    except OSError as error:
        raise EnvironmentProblem(f"The docker CLI cannot be run ({command[0]}): {error}") from None
    return 128 - code if code < 0 else code


@contextlib.contextmanager
def _terminal_belongs_to_child() -> Iterator[None]:
    """Ignore SIGINT/SIGQUIT in this process while the child runs (main thread only: signal
    handlers cannot be set elsewhere, and then the caller's own handling stays)."""
    if not _main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGQUIT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _ignore(signum: int, frame: object) -> None:
    """A handler doing nothing: unlike SIG_IGN, exec resets it, so the child gets the
    default disposition and handles the signal itself."""


class TerminalContainer(Container):
    """A host container started by ``docker start --attach --interactive`` on the user's
    terminal (the CLI attaches before it starts the process: nothing the shell prints is
    missed), while the job reads its output as any host's (``attach``: the log file gets
    what the terminal shows). The CLI ends when the container does; ``remove`` and ``keep``
    reap it."""

    def __init__(self, api: EngineClient, container_id: str, host: str, *, tty: bool) -> None:
        super().__init__(api, container_id, host)
        self.tty = tty
        self._process: subprocess.Popen[bytes] | None = None

    def attach(self) -> OutputStream:
        params = {"stdout": 1, "stderr": 1, "stream": 1, "logs": 1}
        with engine_call(f"attach to the container of {self.host}"):
            socket = self._api.attach_socket(self.id, params=params)
        stream = OutputStream(socket, tty=self.tty)  # a TTY's output is not multiplexed
        self._streams.append(stream)
        return stream

    def start(self) -> None:
        """Start on the terminal; return once the engine says the process started (or
        ended); StartFailed as ``Container.start`` raises it."""
        command = [docker_cli(), "start", "--attach", "--interactive", self.id]
        try:
            self._process = subprocess.Popen(command)
        except OSError as error:
            raise EnvironmentProblem(
                f"The docker CLI cannot be run ({command[0]}): {error}"
            ) from None
        while True:
            ended = self._process.poll()
            state = self._state()
            if state is None:
                raise StartFailed(self.removed_reason(), EXIT_REMOVED)
            if state.get("Status") != "created":
                return  # running, or already exited: the supervisor sees which
            if state.get("Error"):
                words = str(state["Error"])
                raise start_failure(Failure(Kind.REFUSED, words, words), state.get("ExitCode"))
            if ended is not None:
                raise EnvironmentProblem(
                    f"`docker start --attach --interactive` could not start the container of "
                    f"{self.host} (exit status {ended}; its message is above)"
                )
            time.sleep(0.02)

    def exited(self) -> Exit | None:
        ended = super().exited()
        if ended is not None and self._process is not None:
            # The CLI restores the terminal as it ends: let it, before the emulator prints.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(CLI_SETTLE_SECONDS)
        return ended

    def keep(self) -> None:
        try:
            super().keep()
        finally:
            self._reap()

    def remove(self) -> None:
        try:
            super().remove()
        finally:
            self._reap()

    def _reap(self) -> None:
        """The CLI has ended with the container; else it is ended (a TTY left in raw mode
        by a killed CLI is the lesser evil next to a process left behind)."""
        process = self._process
        if process is None:
            return
        try:
            process.wait(CLI_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(CLI_EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
