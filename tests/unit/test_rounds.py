"""The rounds of a job (run/rounds.py): which deadlines stop a round's hosts, when another
round starts, and what a rehearsal refuses before anything exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emulator import RunOptions
from emulator.errors import EmulatorError
from emulator.request.validation import parse_request
from emulator.run.rounds import Rounds, check_rehearsal
from emulator.run.supervisor import StopCause
from tests.fixtures.jobs import probe_request

SPOT: dict[str, Any] = {
    "EnableManagedSpotTraining": True,
    "StoppingCondition": {"MaxRuntimeInSeconds": 100, "MaxWaitTimeInSeconds": 300},
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rounds(options: RunOptions, clock: Clock, **members: Any) -> Rounds:
    spec = parse_request(probe_request(Path("/tmp/out"), **{**SPOT, **members}))
    return Rounds(spec, options, created=clock.now, clock=clock)


def by_cause(job: Rounds) -> dict[StopCause, float]:
    return {deadline.cause: deadline.seconds for deadline in job.deadlines()}


def test_a_plain_round_has_max_runtime_and_max_wait() -> None:
    clock = Clock()
    job = rounds(RunOptions(), clock)
    clock.now += 20  # staging: counts towards the wait, not the runtime
    assert by_cause(job) == {StopCause.MAX_RUNTIME: 100, StopCause.MAX_WAIT: 280}


def test_interruptions_count_training_time_over_the_rounds() -> None:
    clock = Clock()
    job = rounds(RunOptions(interrupt_after=(50, 30)), clock)
    assert by_cause(job)[StopCause.INTERRUPTED] == 30  # the earliest first
    restart = job.ended(StopCause.INTERRUPTED, 30.4)
    assert restart is not None and restart.cause is StopCause.INTERRUPTED
    assert "resuming from the checkpoints" not in restart.notice  # no CheckpointConfig
    assert "no checkpoints to resume from" in restart.notice
    second = by_cause(job)
    assert second[StopCause.INTERRUPTED] == pytest.approx(50 - 30.4)
    assert second[StopCause.MAX_RUNTIME] == pytest.approx(100 - 30.4)
    assert job.ended(StopCause.INTERRUPTED, 19.6) is not None
    assert StopCause.INTERRUPTED not in by_cause(job)  # both spent
    assert job.ended(None, 5) is None  # the hosts exited: the job ends with this round
    assert job.round == 3


def test_a_restart_with_checkpoints_says_it_resumes() -> None:
    clock = Clock()
    job = rounds(RunOptions(interrupt_after=(5,)), clock, CheckpointConfig={"S3Uri": "/tmp/ckpt"})
    restart = job.ended(StopCause.INTERRUPTED, 5)
    assert restart is not None
    assert restart.notice == "Starting again on fresh hosts, resuming from the checkpoints"
    assert restart.starting == "Restarting the training job after a spot interruption"


def test_internal_errors_are_retried_up_to_the_maximum_then_end_the_job() -> None:
    clock = Clock()
    job = rounds(
        RunOptions(internal_error_after=7), clock, RetryStrategy={"MaximumRetryAttempts": 2}
    )
    assert by_cause(job)[StopCause.INTERNAL_ERROR] == 7
    first = job.ended(StopCause.INTERNAL_ERROR, 7)
    assert first is not None and "attempt 2 of 3" in first.starting
    assert by_cause(job)[StopCause.INTERNAL_ERROR] == 7  # into every attempt's training
    second = job.ended(StopCause.INTERNAL_ERROR, 7)
    assert second is not None and "attempt 3 of 3" in second.starting
    assert job.ended(StopCause.INTERNAL_ERROR, 7) is None  # the retries are spent


def test_without_a_retry_strategy_an_internal_error_ends_the_job() -> None:
    job = rounds(RunOptions(internal_error_after=7), Clock())
    assert job.ended(StopCause.INTERNAL_ERROR, 7) is None


@pytest.mark.parametrize("cause", [StopCause.FAILURE, StopCause.MAX_RUNTIME, StopCause.STOPPED])
def test_other_endings_never_start_another_round(cause: StopCause) -> None:
    job = rounds(
        RunOptions(interrupt_after=(5,), internal_error_after=7),
        Clock(),
        RetryStrategy={"MaximumRetryAttempts": 2},
    )
    assert job.ended(cause, 3) is None


def test_a_job_that_is_not_managed_spot_has_no_max_wait() -> None:
    spec = parse_request(probe_request(Path("/tmp/out")))
    job = Rounds(spec, RunOptions(), created=0, clock=lambda: 50)
    assert {d.cause for d in job.deadlines()} == {StopCause.MAX_RUNTIME}


@pytest.mark.parametrize(
    ("members", "options", "message"),
    [
        ({}, RunOptions(interrupt_after=(5,)), "only a managed spot job is interrupted"),
        (SPOT, RunOptions(interrupt_after=(5, 5)), "the same time twice"),
        (SPOT, RunOptions(interrupt_after=(0,)), "greater than 0"),
        (SPOT, RunOptions(internal_error_after=-1), "greater than 0"),
        (SPOT, RunOptions(interrupt_after=(5,), keep=True), "--keep cannot be combined"),
        (SPOT, RunOptions(internal_error_after=5, shell=True), "--shell cannot be combined"),
    ],
)
def test_what_a_rehearsal_refuses(
    members: dict[str, Any], options: RunOptions, message: str
) -> None:
    spec = parse_request(probe_request(Path("/tmp/out"), **members))
    with pytest.raises(EmulatorError, match=message):
        check_rehearsal(spec, options)
