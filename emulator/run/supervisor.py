"""The hosts of a running job, and the rule that says how the job ended.

The completion rule:

* the job is Completed when every host has exited 0;
* when a host exits non-zero, every other host still running gets SIGTERM and, after the grace
  period, SIGKILL; the job is Failed with the FailureReason of the host that failed FIRST (by
  the engine's exit time, not by host number), suffixed "(host algo-N)" when there are several
  hosts; hosts exiting because of that SIGTERM never replace the first failure;
* a host that cannot start at all (bad entrypoint) fails the job the same way at once: the
  hosts already started get SIGTERM and, after the same grace period, SIGKILL (a second
  Ctrl-C/SIGTERM kills them at once);
* a host whose container is removed from outside the emulator (``docker rm -f``) counts as a
  host that exited 137, with the FailureReason "ClientError: the container of algo-N was
  removed from outside the emulator, exit code: 137";
* MaxRuntimeInSeconds, ``emulator stop`` and Ctrl-C/SIGTERM stop every host (SIGTERM, grace,
  SIGKILL) and the job is Stopped (MaxRuntimeExceeded or Stopped), whatever the exit codes;
* so do the other deadlines a job gives (``Deadline``): MaxWaitTimeInSeconds (Stopped,
  MaxWaitTimeExceeded), a rehearsed spot interruption and an injected internal error (the
  round ends; the job decides whether another one starts: run/rounds.py).

The supervisor sees hosts through the small ``Host`` protocol (a container, in a job), and time
through an injectable clock, so the rule is tested in milliseconds with fake hosts.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from emulator.engine import EXIT_REMOVED, Exit, StartFailed
from emulator.finish.records import Outcome

POLL_SECONDS = 0.1
STOP_CHECK_SECONDS = 1.0  # how often a stop request (`emulator stop`) is looked for


class Host(Protocol):
    """One host of the job as the supervisor drives it."""

    @property
    def host(self) -> str: ...

    def start(self) -> None:
        """Start the host; raises StartFailed when it cannot run at all."""

    def exited(self) -> Exit | None:
        """How the host ended, or None while it runs."""

    def signal(self, signal_name: str) -> None: ...

    def removed_from_outside(self) -> bool:
        """Whether a 137 exit was the container's removal by someone else."""


class StopCause(enum.Enum):
    """Why the emulator stopped the hosts (the value is the ending's SecondaryStatus)."""

    FAILURE = "Failed"  # a host failed: the others are stopped
    MAX_RUNTIME = "MaxRuntimeExceeded"
    MAX_WAIT = "MaxWaitTimeExceeded"  # a managed spot job's whole time, waits included
    STOPPED = "Stopped"  # StopTrainingJob, `emulator stop`, Ctrl-C or SIGTERM
    INTERRUPTED = "Interrupted"  # a rehearsed spot interruption: the job starts again
    INTERNAL_ERROR = "InternalServerError"  # an injected internal error: retried or Failed


# SageMaker's FailureReason for a job its own side failed (the retries, if any, exhausted).
INTERNAL_ERROR_REASON = "InternalServerError: We encountered an internal error. Please try again."


@dataclass(frozen=True)
class Deadline:
    """A moment that stops every host: ``seconds`` after the supervisor started them (zero or
    less: at once), with the cause the ending gets and the notice ``on_stop`` hears."""

    seconds: float
    cause: StopCause
    message: str


def max_runtime(limit: int, remaining: float | None = None) -> Deadline:
    """MaxRuntimeInSeconds as a deadline: ``remaining`` seconds of it (all of it by default;
    less when earlier rounds of the job used some)."""
    seconds = limit if remaining is None else remaining
    return Deadline(
        seconds, StopCause.MAX_RUNTIME, f"MaxRuntimeInSeconds ({limit}) reached: stopping"
    )


@dataclass(frozen=True)
class Ending:
    """What the supervisor saw; ``outcome`` applies the completion rule to it."""

    cause: StopCause | None = None
    failed_host: str | None = None  # the first host to fail (exit or start)
    exit_code: int = 0
    removed: bool = False  # that host's container was removed from outside
    start_failure: StartFailed | None = None
    interrupted: bool = False  # a Ctrl-C/SIGTERM arrived: the run re-raises after cleanup


def outcome(ending: Ending, failure_reason: Callable[[str, int], str], hosts: int) -> Outcome:
    """The job's Outcome under the completion rule; ``failure_reason(host, code)`` words an
    algorithm failure from that host's failure file."""
    if ending.cause in (StopCause.MAX_RUNTIME, StopCause.MAX_WAIT, StopCause.STOPPED):
        return Outcome.stopped(ending.cause.value)
    if ending.cause is StopCause.INTERNAL_ERROR:
        return Outcome.failed(INTERNAL_ERROR_REASON)
    if ending.cause is StopCause.INTERRUPTED:
        raise ValueError("an interrupted round is not the job's ending: the job starts again")
    host, code = ending.failed_host, ending.exit_code
    if host is None:
        return Outcome.completed()
    if ending.start_failure is not None:
        reason = f"AlgorithmError: {ending.start_failure.reason}, exit code: {code}"
    elif ending.removed:
        removed = f"the container of {host} was removed from outside the emulator"
        return Outcome.failed(f"ClientError: {removed}, exit code: {code}")
    else:
        reason = failure_reason(host, code)
    return Outcome.failed(f"{reason} (host {host})" if hosts > 1 else reason)


class Supervisor:
    """Starts the hosts and tracks them: exits, SIGTERM with a grace period, then SIGKILL."""

    def __init__(
        self,
        hosts: Sequence[Host],
        grace_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.hosts = list(hosts)
        self.started: list[Host] = []
        self.grace_seconds = grace_seconds
        self.exits: dict[str, Exit] = {}
        self.kill_at: float | None = None
        self._clock = clock
        self._sleep = sleep

    # -- the job's phase ---------------------------------------------------------------------

    def run(
        self,
        deadlines: Sequence[Deadline],
        signals: list[int],
        stop_requested: Callable[[], bool],
        on_stop: Callable[[StopCause, str], None],
    ) -> Ending:
        """Start every host, then wait for the job's end: all exit, a failure, the first of
        the ``deadlines`` (the runtime limit: ``max_runtime``), a stop request, or a signal
        (``signals`` fills as they arrive; the first asks for a stop, the second kills).
        ``on_stop`` hears of each stop the emulator begins, with the notice to give."""
        started_at = self._clock()
        for host in self.hosts:
            try:
                host.start()
            except StartFailed as exc:
                return self._start_failed(host, exc, signals, on_stop)
            self.started.append(host)
        # Earliest first; a tie goes to the deadline given first.
        due = sorted(
            ((started_at + d.seconds, index, d) for index, d in enumerate(deadlines)),
            key=lambda item: item[:2],
        )
        return self._watch([(at, d) for at, _, d in due], signals, stop_requested, on_stop)

    def _start_failed(
        self,
        host: Host,
        exc: StartFailed,
        signals: list[int],
        on_stop: Callable[[StopCause, str], None],
    ) -> Ending:
        """A host could not start: the job cannot proceed without it. The hosts already
        running are stopped as after a failure; those never started stay for the caller to
        remove."""
        if self.started:
            on_stop(StopCause.FAILURE, f"{host.host} could not start: stopping the other hosts")
        self.stop_all()
        self.wait_all(signals)
        return Ending(
            failed_host=host.host,
            exit_code=exc.exit_code,
            start_failure=exc,
            interrupted=bool(signals),
        )

    def _watch(
        self,
        deadlines: list[tuple[float, Deadline]],
        signals: list[int],
        stop_requested: Callable[[], bool],
        on_stop: Callable[[StopCause, str], None],
    ) -> Ending:
        cause: StopCause | None = None
        interrupted = False
        next_stop_check = 0.0
        while not self.all_exited():
            now = self._clock()
            if signals and not interrupted:
                interrupted = True
                cause = StopCause.STOPPED  # like StopTrainingJob: artifacts still packed
                on_stop(cause, "Interrupted: stopping the job (Ctrl-C again to kill at once)")
                self.stop_all()
            elif len(signals) > 1:
                self.kill_all()
            if cause is None and self.first_failure() is not None:
                cause = StopCause.FAILURE
                self.stop_all()
            if cause is None and deadlines and now >= deadlines[0][0]:
                reached = deadlines[0][1]
                cause = reached.cause
                on_stop(cause, reached.message)
                self.stop_all()
            if cause is None and now >= next_stop_check:
                next_stop_check = now + STOP_CHECK_SECONDS
                if stop_requested():
                    cause = StopCause.STOPPED
                    on_stop(cause, "Stop requested: stopping the job")
                    self.stop_all()
            self.enforce_grace()
            self._sleep(POLL_SECONDS)
        failed = self.first_failure()
        if failed is None:
            return Ending(cause=cause, interrupted=interrupted)
        host, code = failed
        return Ending(
            cause=cause,
            failed_host=host,
            exit_code=code,
            removed=self._removed_from_outside(host),
            interrupted=interrupted,
        )

    # -- the hosts ---------------------------------------------------------------------------

    def poll(self) -> None:
        for host in self.started:
            if host.host not in self.exits:
                exited = host.exited()
                if exited is not None:
                    self.exits[host.host] = exited

    def all_exited(self) -> bool:
        self.poll()
        return len(self.exits) == len(self.started)

    def first_failure(self) -> tuple[str, int] | None:
        """The host that exited non-zero first (engine exit time; host order on ties)."""
        order = [host.host for host in self.hosts]
        failed = [
            (exit.finished_at, order.index(name), name, exit.code)
            for name, exit in self.exits.items()
            if exit.code != 0
        ]
        if not failed:
            return None
        _, _, name, code = min(failed)
        return name, code

    def _removed_from_outside(self, name: str) -> bool:
        """Whether ``name`` ended because its container was removed from outside (a 137 exit
        seen before the removal is checked with the engine)."""
        exited = self.exits[name]
        if exited.removed:
            return True
        host = next(host for host in self.started if host.host == name)
        return exited.code == EXIT_REMOVED and host.removed_from_outside()

    def stop_all(self, grace: float | None = None) -> None:
        grace = self.grace_seconds if grace is None else grace
        for host in self.started:
            if host.host not in self.exits:
                host.signal("SIGTERM")
        deadline = self._clock() + grace
        self.kill_at = deadline if self.kill_at is None else min(self.kill_at, deadline)

    def enforce_grace(self) -> None:
        if self.kill_at is not None and self._clock() >= self.kill_at:
            self.kill_all()

    def kill_all(self) -> None:
        for host in self.started:
            if host.host not in self.exits:
                host.signal("SIGKILL")

    def wait_all(self, signals: list[int] | None = None) -> None:
        """Wait for every started host to exit, SIGKILLing those left when the grace period
        ends or when a second signal arrives in ``signals`` (the first one asked for the stop
        already under way)."""
        killed = False
        while not self.all_exited():
            if signals is not None and len(signals) > 1 and not killed:
                killed = True
                self.kill_all()
            self.enforce_grace()
            self._sleep(POLL_SECONDS)
