"""The completion rule (run/supervisor.py) on fake hosts and a fake clock: milliseconds, no engine.

A fake host exits at a set time with a set code; SIGTERM ends it at once with 143 unless it
ignores SIGTERM; SIGKILL always ends it with 137. The clock moves only when the supervisor
sleeps, so every time below is exact.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

import pytest

from emulator.engine import Exit, StartFailed
from emulator.finish.records import Outcome
from emulator.run.supervisor import (
    INTERNAL_ERROR_REASON,
    Deadline,
    Ending,
    StopCause,
    Supervisor,
    max_runtime,
    outcome,
)

GRACE = 30.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeHost:
    host: str
    clock: FakeClock
    exit_at: float | None = None  # seconds after the start; None: runs until signalled
    code: int = 0
    ignores_term: bool = False
    cannot_start: StartFailed | None = None
    removed: bool = False  # a 137 exit that was a removal from outside
    signals: list[tuple[str, float]] = field(default_factory=list)
    _exit: Exit | None = None

    def start(self) -> None:
        if self.cannot_start is not None:
            raise self.cannot_start
        if self.exit_at is not None:
            self.exit_at += self.clock.now

    def exited(self) -> Exit | None:
        if self._exit is None and self.exit_at is not None and self.clock.now >= self.exit_at:
            self._exit = Exit(self.code, self.exit_at)
        return self._exit

    def signal(self, signal_name: str) -> None:
        self.signals.append((signal_name, self.clock.now))
        if self._exit is not None:
            return
        if signal_name == "SIGKILL" or not self.ignores_term:
            self._exit = Exit(137 if signal_name == "SIGKILL" else 143, self.clock.now)

    def removed_from_outside(self) -> bool:
        return self.removed


@dataclass
class Run:
    supervisor: Supervisor
    ending: Ending
    stops: list[tuple[StopCause, str]]
    started_at: float

    def outcome(self) -> Outcome:
        hosts = len(self.supervisor.hosts)
        return outcome(self.ending, lambda host, code: f"AlgorithmError: {host} {code}", hosts)


def supervise(
    clock: FakeClock,
    hosts: list[FakeHost],
    *,
    limit: int = 86400,
    signals: list[int] | None = None,
    stop_after: float | None = None,
) -> Run:
    stops: list[tuple[StopCause, str]] = []
    started_at = clock.now
    supervisor = Supervisor(hosts, GRACE, clock=clock, sleep=clock.sleep)
    ending = supervisor.run(
        [max_runtime(limit)],
        signals if signals is not None else [],
        stop_requested=lambda: stop_after is not None and clock.now - started_at >= stop_after,
        on_stop=lambda cause, message: stops.append((cause, message)),
    )
    return Run(supervisor, ending, stops, started_at)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_every_host_exiting_0_completes_the_job(clock: FakeClock) -> None:
    hosts = [FakeHost("algo-1", clock, exit_at=5), FakeHost("algo-2", clock, exit_at=9)]
    run = supervise(clock, hosts)
    assert run.outcome() == Outcome.completed()
    assert run.stops == []
    assert all(host.signals == [] for host in hosts)


def test_a_failure_stops_the_others_and_names_the_failed_host(clock: FakeClock) -> None:
    hosts = [
        FakeHost("algo-1", clock),
        FakeHost("algo-2", clock, exit_at=5, code=2),
        FakeHost("algo-3", clock),
    ]
    run = supervise(clock, hosts)
    assert run.outcome() == Outcome.failed("AlgorithmError: algo-2 2 (host algo-2)")
    for other in (hosts[0], hosts[2]):
        assert [name for name, _ in other.signals] == ["SIGTERM"]
    # The hosts that exited 143 because of that SIGTERM never replace the first failure.
    assert run.supervisor.exits["algo-1"].code == 143


def test_a_single_hosts_failure_reason_has_no_host_suffix(clock: FakeClock) -> None:
    run = supervise(clock, [FakeHost("algo-1", clock, exit_at=1, code=3)])
    assert run.outcome() == Outcome.failed("AlgorithmError: algo-1 3")


def test_the_first_failure_is_by_exit_time_not_by_host_number(clock: FakeClock) -> None:
    # Both failures are seen in the same poll: the engine's exit times decide.
    hosts = [
        FakeHost("algo-1", clock, exit_at=2.05, code=1),
        FakeHost("algo-2", clock, exit_at=2.01, code=4),
    ]
    run = supervise(clock, hosts)
    assert run.outcome() == Outcome.failed("AlgorithmError: algo-2 4 (host algo-2)")


def test_a_host_ignoring_sigterm_is_killed_when_the_grace_period_ends(clock: FakeClock) -> None:
    stubborn = FakeHost("algo-1", clock, ignores_term=True)
    run = supervise(clock, [stubborn, FakeHost("algo-2", clock, exit_at=10, code=1)])
    (term, term_at), (kill, kill_at) = stubborn.signals
    assert (term, kill) == ("SIGTERM", "SIGKILL")
    assert kill_at - term_at == pytest.approx(GRACE, abs=0.2)
    assert run.outcome().reason == "AlgorithmError: algo-2 1 (host algo-2)"


def test_a_host_that_cannot_start_fails_the_job_and_stops_those_started(clock: FakeClock) -> None:
    first = FakeHost("algo-1", clock, ignores_term=True)
    broken = FakeHost("algo-2", clock, cannot_start=StartFailed("exec: no such file", 127))
    never = FakeHost("algo-3", clock)
    run = supervise(clock, [first, broken, never])
    assert run.outcome() == Outcome.failed(
        "AlgorithmError: exec: no such file, exit code: 127 (host algo-2)"
    )
    assert [name for name, _ in first.signals] == ["SIGTERM", "SIGKILL"]
    assert run.supervisor.started == [first]  # algo-3 is left for the job to remove
    assert run.stops == [(StopCause.FAILURE, "algo-2 could not start: stopping the other hosts")]


def test_max_runtime_stops_the_job_whatever_the_exit_codes(clock: FakeClock) -> None:
    hosts = [FakeHost("algo-1", clock), FakeHost("algo-2", clock, ignores_term=True)]
    run = supervise(clock, hosts, limit=60)
    assert run.outcome() == Outcome.stopped("MaxRuntimeExceeded")
    assert run.stops == [(StopCause.MAX_RUNTIME, "MaxRuntimeInSeconds (60) reached: stopping")]
    assert hosts[0].signals[0] == ("SIGTERM", pytest.approx(run.started_at + 60, abs=0.2))
    assert run.supervisor.exits["algo-2"].code == 137


def test_a_stop_request_stops_the_job(clock: FakeClock) -> None:
    run = supervise(clock, [FakeHost("algo-1", clock)], stop_after=5)
    assert run.outcome() == Outcome.stopped("Stopped")
    assert run.stops == [(StopCause.STOPPED, "Stop requested: stopping the job")]
    # Stop requests are looked for once a second.
    assert run.ending.cause is StopCause.STOPPED
    assert clock.now - run.started_at == pytest.approx(6, abs=1.2)


def test_a_signal_stops_the_job_and_a_second_one_kills_at_once(clock: FakeClock) -> None:
    stubborn = FakeHost("algo-1", clock, ignores_term=True)
    run = supervise(clock, [stubborn], signals=[signal.SIGINT, signal.SIGINT])
    assert run.outcome() == Outcome.stopped("Stopped")
    assert run.ending.interrupted
    assert [name for name, _ in stubborn.signals] == ["SIGTERM", "SIGKILL"]
    assert clock.now - run.started_at < 1  # no grace period waited


def test_one_signal_waits_for_the_grace_period(clock: FakeClock) -> None:
    stubborn = FakeHost("algo-1", clock, ignores_term=True)
    run = supervise(clock, [stubborn], signals=[signal.SIGTERM])
    assert run.ending.interrupted
    assert clock.now - run.started_at == pytest.approx(GRACE, abs=0.3)


def test_a_container_removed_from_outside_is_a_client_error(clock: FakeClock) -> None:
    run = supervise(clock, [FakeHost("algo-1", clock, exit_at=3, code=137, removed=True)])
    assert run.outcome() == Outcome.failed(
        "ClientError: the container of algo-1 was removed from outside the emulator, exit code: 137"
    )


def test_a_stop_is_not_turned_into_a_failure_by_the_exits_it_causes(clock: FakeClock) -> None:
    hosts = [FakeHost("algo-1", clock), FakeHost("algo-2", clock)]
    run = supervise(clock, hosts, limit=10)
    assert {exit.code for exit in run.supervisor.exits.values()} == {143}
    assert run.outcome() == Outcome.stopped("MaxRuntimeExceeded")


def test_the_earliest_deadline_stops_the_hosts_with_its_cause(clock: FakeClock) -> None:
    stops: list[tuple[StopCause, str]] = []
    supervisor = Supervisor([FakeHost("algo-1", clock)], GRACE, clock=clock, sleep=clock.sleep)
    started_at = clock.now
    ending = supervisor.run(
        [
            max_runtime(60),
            Deadline(12, StopCause.INTERRUPTED, "interrupted"),
            Deadline(20, StopCause.INTERNAL_ERROR, "internal error"),
        ],
        [],
        stop_requested=lambda: False,
        on_stop=lambda cause, message: stops.append((cause, message)),
    )
    assert ending.cause is StopCause.INTERRUPTED
    assert stops == [(StopCause.INTERRUPTED, "interrupted")]
    assert clock.now - started_at == pytest.approx(12, abs=0.3)
    with pytest.raises(ValueError, match="not the job's ending"):
        outcome(ending, lambda host, code: "unused", 1)


def test_a_deadline_already_past_stops_the_hosts_at_once(clock: FakeClock) -> None:
    supervisor = Supervisor([FakeHost("algo-1", clock)], GRACE, clock=clock, sleep=clock.sleep)
    started_at = clock.now
    ending = supervisor.run(
        [max_runtime(60, remaining=-3)], [], lambda: False, lambda cause, message: None
    )
    assert outcome(ending, lambda host, code: "unused", 1) == Outcome.stopped("MaxRuntimeExceeded")
    assert clock.now - started_at < 0.5


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (StopCause.MAX_WAIT, Outcome.stopped("MaxWaitTimeExceeded")),
        (StopCause.INTERNAL_ERROR, Outcome.failed(INTERNAL_ERROR_REASON)),
    ],
)
def test_the_other_causes_outcomes(cause: StopCause, expected: Outcome) -> None:
    assert outcome(Ending(cause=cause), lambda host, code: "unused", 1) == expected
