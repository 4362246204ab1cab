"""The rounds of a job: what SageMaker does around it when its instances go away.

A job runs in one round unless the cloud interrupts it. Two things make another round, each on
fresh hosts (new containers, a fresh /opt/ml tree, the data staged again, checkpoints restored
from CheckpointConfig.S3Uri), through Starting, Downloading and Training again:

* a spot interruption (``--interrupt-after SECONDS``, managed spot jobs only): at each of those
  seconds of training time, counted over all the rounds, every host is stopped as a reclaimed
  instance is; SecondaryStatus ``Interrupted``; the job starts again, however many times;
* an internal error (``--inject-internal-error-after SECONDS``: that many seconds into every
  attempt's training): retried up to ``RetryStrategy.MaximumRetryAttempts`` times (2 means three
  attempts), then the job is Failed with SageMaker's InternalServerError reason. A job that
  fails by itself (AlgorithmError) is never retried.

The clocks, as SageMaker keeps them: MaxRuntimeInSeconds counts training time, the seconds the
hosts ran, summed over the rounds; MaxWaitTimeInSeconds counts everything since the job was
created, the rounds' staging and the interruptions included (past it: Stopped,
MaxWaitTimeExceeded).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from emulator.errors import EmulatorError
from emulator.request.spec import JobSpec
from emulator.run.options import RunOptions
from emulator.run.supervisor import Deadline, StopCause, max_runtime


def managed_spot(spec: JobSpec) -> bool:
    return spec.request.get("EnableManagedSpotTraining") is True


def max_wait_seconds(spec: JobSpec) -> int | None:
    seconds = spec.request.get("StoppingCondition", {}).get("MaxWaitTimeInSeconds")
    return int(seconds) if seconds is not None else None


def max_retry_attempts(spec: JobSpec) -> int:
    return int(spec.request.get("RetryStrategy", {}).get("MaximumRetryAttempts", 0))


def check_rehearsal(spec: JobSpec, options: RunOptions) -> None:
    """Refuse, before anything exists, interruptions and errors the job cannot rehearse."""
    times = options.interrupt_after
    if times and not managed_spot(spec):
        raise EmulatorError(
            "--interrupt-after rehearses a spot interruption, and only a managed spot job is "
            'interrupted: set "EnableManagedSpotTraining": true in the request to '
            "rehearse it"
        )
    if any(seconds <= 0 for seconds in times):
        raise EmulatorError("--interrupt-after takes seconds of training time greater than 0")
    if len(set(times)) != len(times):
        raise EmulatorError(
            "--interrupt-after is given the same time twice: each one is a moment of the "
            "training time counted over all the rounds (e.g. 30 and 60)"
        )
    if options.internal_error_after is not None and options.internal_error_after <= 0:
        raise EmulatorError("--inject-internal-error-after takes seconds greater than 0")
    rehearsed = bool(times) or options.internal_error_after is not None
    for flag, used in (("--keep", options.keep), ("--shell", options.shell)):
        if rehearsed and used:
            raise EmulatorError(
                f"{flag} cannot be combined with --interrupt-after or "
                "--inject-internal-error-after: an interrupted round's hosts are gone, as a "
                f"reclaimed instance's are; rehearse the interruptions without {flag}"
            )


@dataclass(frozen=True)
class Restart:
    """Another round starts: the notice saying why, and the next Starting message."""

    cause: StopCause
    notice: str
    starting: str


class Rounds:
    """Keeps a job's clocks over its rounds and decides, when one ends, whether another starts.

    ``created`` is the monotonic time the job was created (MaxWaitTimeInSeconds counts from
    it); ``clock`` is injectable, so the rules are tested without waiting."""

    def __init__(
        self,
        spec: JobSpec,
        options: RunOptions,
        created: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.interrupt_at = sorted(options.interrupt_after)
        self.internal_error_after = options.internal_error_after
        self.created = created
        self.clock = clock
        self.trained = 0.0  # seconds the hosts ran, over the rounds (what MaxRuntime counts)
        self.round = 1
        self.attempt = 1
        self.attempts = 1 + max_retry_attempts(spec)
        self.interruptions = 0

    def deadlines(self) -> list[Deadline]:
        """What stops this round's hosts, in seconds from their start."""
        limit = self.spec.max_runtime_seconds
        deadlines = [max_runtime(limit, limit - self.trained)]
        wait = max_wait_seconds(self.spec)
        if wait is not None and managed_spot(self.spec):
            waited = self.clock() - self.created
            deadlines.append(
                Deadline(
                    wait - waited,
                    StopCause.MAX_WAIT,
                    f"MaxWaitTimeInSeconds ({wait}) reached: stopping",
                )
            )
        if self.interruptions < len(self.interrupt_at):
            at = self.interrupt_at[self.interruptions]
            deadlines.append(
                Deadline(
                    at - self.trained,
                    StopCause.INTERRUPTED,
                    f"Spot interruption {self.interruptions + 1} of {len(self.interrupt_at)} "
                    f"(--interrupt-after {at:g}): the instances are reclaimed, every host is "
                    "stopped",
                )
            )
        if self.internal_error_after is not None:
            deadlines.append(
                Deadline(
                    self.internal_error_after,
                    StopCause.INTERNAL_ERROR,
                    f"Internal error injected {self.internal_error_after:g} s into attempt "
                    f"{self.attempt} of {self.attempts} (--inject-internal-error-after): "
                    "every host is stopped",
                )
            )
        return deadlines

    def ended(self, cause: StopCause | None, ran_seconds: float) -> Restart | None:
        """Count a round that ran ``ran_seconds`` and ended by ``cause``; the Restart when
        another round starts, None when the job ends with this one."""
        self.trained += ran_seconds
        if cause is StopCause.INTERRUPTED:
            self.interruptions += 1
            starting = "Restarting the training job after a spot interruption"
        elif cause is StopCause.INTERNAL_ERROR and self.attempt < self.attempts:
            self.attempt += 1
            starting = (
                f"Retrying the training job after an internal error (attempt {self.attempt} "
                f"of {self.attempts}, RetryStrategy.MaximumRetryAttempts)"
            )
        else:
            return None
        self.round += 1
        notice = (
            "Starting again on fresh hosts, resuming from the checkpoints"
            if self.spec.checkpoint is not None
            else "Starting again on fresh hosts. The job has no CheckpointConfig, so no "
            "checkpoints to resume from: its training starts again from nothing"
        )
        return Restart(cause, notice, starting)
