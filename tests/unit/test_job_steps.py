"""The job's steps that overlap (run/parallel.py, run/hosts.py), its record written in the
background (run/saver.py), the job without checkpoints (run/checkpointing.py) and the default
bridge of a single-host job (engine/network.py): no engine; a real store."""

from __future__ import annotations

import ipaddress
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from emulator.engine import JobNetwork, StartFailed
from emulator.errors import EnvironmentProblem
from emulator.progress import NO_PROGRESS
from emulator.run.checkpointing import NoCheckpoints, job_checkpoints
from emulator.run.hosts import JobHosts, started_hosts
from emulator.run.parallel import Attempt, Background, at_once, first_error
from emulator.run.saver import RecordSaver
from emulator.state.store import JobStore
from tests.fixtures.jobs import probe_request


def test_at_once_runs_the_calls_together_and_keeps_their_order() -> None:
    barrier = threading.Barrier(3, timeout=5)  # passes only when all three run at once

    def call(value: int) -> int:
        barrier.wait()
        return value

    attempts = at_once([lambda v=v: call(v) for v in (1, 2, 3)], "test")  # type: ignore[misc]
    assert [attempt.get() for attempt in attempts] == [1, 2, 3]
    assert not [t for t in threading.enumerate() if t.name.startswith("test-")]


def test_at_once_runs_many_calls_in_a_few_threads() -> None:
    running: set[str] = set()

    def call(value: int) -> int:
        running.add(threading.current_thread().name)
        time.sleep(0.01)
        return value * 2

    attempts = at_once([lambda v=v: call(v) for v in range(20)], "few", threads=3)  # type: ignore[misc]
    assert [attempt.get() for attempt in attempts] == [v * 2 for v in range(20)]
    assert len(running) <= 3


def test_errors_are_handed_back_and_the_first_in_order_is_raised() -> None:
    def fail(message: str) -> int:
        if message == "slow":
            time.sleep(0.05)
        raise ValueError(message)

    attempts = at_once([lambda: fail("slow"), lambda: 2, lambda: fail("fast")], "test")
    assert attempts[1].get() == 2
    with pytest.raises(ValueError, match="slow"):
        first_error(attempts)


def test_a_single_call_runs_in_the_calling_thread() -> None:
    (attempt,) = at_once([threading.current_thread], "test")
    assert attempt.get() is threading.current_thread()


def test_background_gives_its_value_or_raises_its_error() -> None:
    assert Background(lambda: 42, "test").result() == 42
    failing = Background(lambda: 1 // 0, "test")
    assert isinstance(failing.attempt().error, ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        failing.result()


class FakeContainer:
    def __init__(self, host: str) -> None:
        self.host = host
        self.id = host


def test_the_supervisor_meets_every_started_host_before_one_that_could_not_start() -> None:
    containers: Any = [FakeContainer(f"algo-{n}") for n in (1, 2, 3)]
    failed = StartFailed('exec: "train": executable file not found in $PATH', 127)
    attempts: list[Attempt[None]] = [Attempt(error=failed), Attempt(), Attempt()]
    hosts = started_hosts(containers, attempts)
    assert [host.host for host in hosts] == ["algo-2", "algo-3", "algo-1"]
    assert [host.started for host in hosts] == [True, True, False]
    hosts[0].start()  # reports the start that went well
    with pytest.raises(StartFailed):
        hosts[2].start()


def test_hosts_that_all_started_keep_their_order() -> None:
    containers: Any = [FakeContainer(f"algo-{n}") for n in (1, 2)]
    hosts = started_hosts(containers, [Attempt(), Attempt()])
    assert [host.host for host in hosts] == ["algo-1", "algo-2"]


def record(status: str) -> dict[str, Any]:
    return {"TrainingJobName": "job", "TrainingJobStatus": "InProgress", "SecondaryStatus": status}


def test_transitions_are_written_in_the_background_and_the_final_record_last(
    tmp_path: Path,
) -> None:
    store = JobStore(tmp_path)
    store.create(record("Starting"))
    saver = RecordSaver(store)
    for status in ("Downloading", "Training", "Uploading"):
        saver.save(record(status))
    final = {**record("Completed"), "TrainingJobStatus": "Completed"}
    saver.save_now(final)
    assert store.get("job") == final  # no transition written after it
    assert not [t for t in threading.enumerate() if t.name == "record"]


def test_a_transition_is_soon_visible_to_other_readers(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.create(record("Starting"))
    saver = RecordSaver(store)
    saver.save(record("Training"))
    deadline = time.monotonic() + 5
    while JobStore(tmp_path).get("job")["SecondaryStatus"] != "Training":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    saver.close()
    saver.save(record("Uploading"))  # a closed saver starts again
    saver.close()
    assert store.get("job")["SecondaryStatus"] == "Uploading"
    assert not [t for t in threading.enumerate() if t.name == "record"]


class FailingStore(JobStore):
    """A store whose record writes fail (a full disk, say)."""

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        self.tried = threading.Event()

    def update(self, record: dict[str, Any]) -> None:
        self.tried.set()
        raise OSError(28, "No space left on device")


def test_a_failed_transition_write_is_raised_by_the_next_save(tmp_path: Path) -> None:
    store = FailingStore(tmp_path)
    saver = RecordSaver(store)
    saver.save(record("Starting"))
    assert store.tried.wait(10)
    deadline = time.monotonic() + 10
    with pytest.raises(OSError, match="No space"):  # the thread keeps it for the next save
        while time.monotonic() < deadline:
            saver.save(record("Training"))
            time.sleep(0.01)
    saver.close()
    with pytest.raises(OSError, match="No space"):
        saver.save_now(record("Completed"))  # the final write's own failure
    assert not [t for t in threading.enumerate() if t.name == "record"]


def test_a_job_without_checkpoints_needs_no_checkpoint_sync(tmp_path: Path) -> None:
    from emulator.request.validation import parse_request

    spec = parse_request(probe_request(tmp_path))
    checkpoints = job_checkpoints(spec, {"algo-1": tmp_path}, print, NO_PROGRESS, None)
    assert isinstance(checkpoints, NoCheckpoints)
    with checkpoints:
        checkpoints.restore()
        checkpoints.start()
        checkpoints.finish()


def test_the_default_bridge_leaves_addresses_and_hosts_file_to_the_engine() -> None:
    bridge = JobNetwork("bridge", ipaddress.IPv4Network("172.17.0.0/16"), shared=True)
    assert bridge.address(0) is None
    assert bridge.hosts_file(["algo-1"]) == {}
    own = JobNetwork("sm-x", ipaddress.IPv4Network("172.21.3.0/24"))
    assert own.address(0) == "172.21.3.2"


class Engine:
    """A stand-in for DockerEngine: what JobHosts asks of it, recorded."""

    def __init__(self, *, bridge: bool = True, refuse_removals: int = 0) -> None:
        self.bridge = bridge
        self.refuse_removals = refuse_removals
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def note(self, call: str) -> None:
        with self.lock:
            self.calls.append(call)

    def default_bridge(self) -> JobNetwork | None:
        self.note("default_bridge")
        if not self.bridge:
            return None
        return JobNetwork("bridge", ipaddress.IPv4Network("172.17.0.0/16"), shared=True)

    def create_network(self, name: str, job: str, *, internal: bool, hosts: int) -> JobNetwork:
        self.note(f"create_network {name} internal={internal} hosts={hosts}")
        return JobNetwork(name, ipaddress.IPv4Network("172.21.3.0/24"), internal)

    def remove_network(self, name: str) -> None:
        self.note(f"remove_network {name}")
        if self.refuse_removals:
            self.refuse_removals -= 1
            raise EnvironmentProblem(f"error while removing network: {name} has active endpoints")

    def wait_for_exit(self, container: Any) -> None:
        container.exited_event.wait(5)


class Container:
    def __init__(self, engine: Engine, host: str) -> None:
        self.engine = engine
        self.host = host
        self.id = host
        self.exited_event = threading.Event()

    def start(self) -> None:
        self.engine.note(f"start {self.host}")
        self.exited_event.set()  # /bin/true

    def remove(self) -> None:
        self.engine.note(f"remove {self.host}")


def job_hosts(engine: Engine, hosts: int, isolated: bool = False) -> JobHosts:
    return JobHosts(engine, "job", hosts=hosts, isolated=isolated)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hosts", "isolated", "bridge", "own"),
    [
        (1, False, True, False),
        (1, True, True, True),
        (2, False, True, True),
        (1, False, False, True),
    ],
    ids=["single", "single-isolated", "several", "engine-without-bridge"],
)
def test_only_a_single_open_host_joins_the_default_bridge(
    hosts: int, isolated: bool, bridge: bool, own: bool
) -> None:
    engine = Engine(bridge=bridge)
    job = job_hosts(engine, hosts, isolated)
    job.prepare_network("sm-job-abcd1234")
    network = job.network()
    assert network.shared is not own
    job.release_network()
    job.finish()
    removed = [call for call in engine.calls if call.startswith("remove_network")]
    assert removed == (["remove_network sm-job-abcd1234"] if own else [])
    if own:
        assert f"create_network sm-job-abcd1234 internal={isolated} hosts={hosts}" in engine.calls


def test_the_hosts_are_started_at_once_watched_and_everything_removed_once() -> None:
    engine = Engine()
    job = job_hosts(engine, 3)
    job.prepare_network("sm-job-abcd1234")
    job.network()
    containers: Any = [Container(engine, f"algo-{n}") for n in (1, 2, 3)]
    job.containers = list(containers)
    started = job.start(containers)
    assert [host.host for host in started] == ["algo-1", "algo-2", "algo-3"]
    job.sleep(5)  # wakes at the first exit, long before 5 s
    job.release_network()
    job.tear_down()
    job.clean_up_containers()  # the teardown removes them: nothing more here
    job.finish()
    job.finish()  # the cleanup's steps run once, whatever calls them again
    assert sorted(c for c in engine.calls if c.startswith("remove ")) == [
        "remove algo-1",
        "remove algo-2",
        "remove algo-3",
    ]
    assert engine.calls.count("remove_network sm-job-abcd1234") == 1
    assert not [t for t in threading.enumerate() if t.name.startswith(("exit-", "remove"))]


def test_a_network_the_engine_will_not_remove_early_is_removed_after_the_containers() -> None:
    engine = Engine(refuse_removals=1)
    job = job_hosts(engine, 2)
    job.prepare_network("sm-job-abcd1234")
    job.network()
    job.containers = [Container(engine, "algo-1")]  # type: ignore[list-item]
    job.release_network()  # refused: an endpoint not released yet
    job.tear_down()
    job.finish()
    assert engine.calls[-2:] == ["remove algo-1", "remove_network sm-job-abcd1234"]
