"""Nothing leaks, whatever happens (issue 6): one two-host job with a FastFile and a Pipe channel
in use, ended every way a job can end, and then no containers, networks, FUSE mounts or their
server processes, FIFO feeders, temp dirs or threads are left.

Paths: success, failure, MaxRuntime (timeout), `emulator stop`, Ctrl-C in-process, and through
the CLI: Ctrl-C, SIGTERM, and SIGKILL of the emulator followed by `emulator prune`. The stopped
paths also check the multi-host stop itself: every host got SIGTERM and its artifacts were
packed; the CLI exits 130 after an interrupt.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from emulator import run_training_job
from emulator.cleanup.prune import stop_process
from emulator.engine import LABEL_JOB
from emulator.request.spec import DataSourceSpec
from emulator.stage.fastfile import ENV_LOCAL_VIEW
from emulator.stage.fastfile.mount import (
    FSTYPE,
    FastFileMount,
    force_unmount,
    is_mounted,
    read_mounts,
)
from emulator.state.store import JobStore
from emulator.storage.local import LocalSource
from tests.fixtures.jobs import PROBE, JobRunner, channel

pytestmark = [pytest.mark.docker, pytest.mark.fuse, pytest.mark.timeout(120)]

EMULATOR = [sys.executable, "-m", "emulator"]
MakeFiles = Callable[[dict[str, bytes]], Path]
HOSTS = ("algo-1", "algo-2")


@pytest.fixture(autouse=True)
def fuse_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """The FastFile channel through FUSE (a local directory is otherwise bind-mounted as it
    is, fastfile/localview.py): its mounts and servers are what must not leak."""
    monkeypatch.setenv(ENV_LOCAL_VIEW, "fuse")


# Uses both channels, keeps a file of the FUSE mount open and a FIFO held unread (its feeder
# blocks on a full pipe), says "ready", then ends as $END says.
SCRIPT = """
me=$(hostname)
trap 'echo t > /opt/ml/model/term-$me; exit 143' TERM
head -c 100 /opt/ml/input/data/fast/x.bin > /dev/null || exit 9
head -c 100 /opt/ml/input/data/pipe_0 > /dev/null || exit 9
exec 3< /opt/ml/input/data/fast/x.bin
exec 4< /opt/ml/input/data/pipe_1
echo ready $me
case $END in
  success) sleep 1; exit 0 ;;
  failure) sleep 1; echo nope > /opt/ml/output/failure; exit 3 ;;
esac
sleep 60 & wait $!
"""


def leak_request(jobs: JobRunner, make_files: MakeFiles, end: str) -> dict[str, Any]:
    data = make_files({"x.bin": os.urandom(300_000)})
    return jobs.request(
        AlgorithmSpecification={
            "TrainingImage": PROBE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["sh", "-c", 'eval "$SCRIPT"'],
        },
        Environment={"SCRIPT": SCRIPT, "END": end},
        InputDataConfig=[
            channel("fast", data, InputMode="FastFile"),
            channel("pipe", data, InputMode="Pipe"),
        ],
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 3 if end == "timeout" else 300},
    )


class Running:
    """What the job had while it ran, once every host said "ready"."""

    def __init__(self, jobs: JobRunner, name: str) -> None:
        self.jobs = jobs
        self.name = name
        self.mounts: list[Path] = []
        self.server_pids: set[int] = set()

    def wait_ready(self, timeout: float = 60) -> None:
        # The log files the store keeps (JobStore.log_path), read without opening the store.
        logs = [self.jobs.home / "jobs" / self.name / f"{host}.log" for host in HOSTS]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(log.exists() and "ready" in log.read_text() for log in logs):
                self._snapshot()
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: the hosts never said ready")

    def _snapshot(self) -> None:
        # Everything carries the job's name: containers and network (label), work dir (name),
        # FUSE mounts (their source names the job, host and channel).
        labelled = self.jobs.leftovers(self.name)
        assert sum(x.startswith("container ") for x in labelled) == 2, labelled
        assert sum(x.startswith("network ") for x in labelled) == 1, labelled
        assert sum(x.startswith("work dir ") for x in labelled) == 1, labelled
        mounts = [m for m in read_mounts() if m.fstype == FSTYPE and self.name in m.source]
        assert len(mounts) == 2, mounts
        self.mounts = [m.mountpoint for m in mounts]
        self.server_pids = {int(m.source.split(":")[1]) for m in mounts}
        assert all(_alive(pid) for pid in self.server_pids)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended: it holds nothing but its pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def assert_nothing_left(jobs: JobRunner, running: Running) -> None:
    name = running.name
    assert jobs.leftovers(name) == []  # containers, networks, work dirs
    client = docker.from_env()
    try:
        assert client.containers.list(all=True, filters={"name": name}) == []
        assert [v for v in client.volumes.list(filters={"label": f"{LABEL_JOB}={name}"})] == []
    finally:
        client.close()
    assert list(jobs.work_root.iterdir()) == []  # no temp dirs, FIFOs or spool files
    work = str(jobs.work_root)
    fuse = [
        m
        for m in read_mounts()
        if m.fstype.startswith("fuse") and str(m.mountpoint).startswith(work)
    ]
    assert fuse == []
    assert not any(_alive(pid) for pid in running.server_pids), "a FastFile server survived"
    packing = list(jobs.output.rglob(".packing-*"))
    assert packing == []


def stop_hosts_saved(jobs: JobRunner, record: dict[str, Any]) -> None:
    """Every host got SIGTERM and what it saved then is in model.tar.gz."""
    model = jobs.model(record)
    assert {f"term-{host}" for host in HOSTS} <= set(model), sorted(model)


# -- in-process paths ---------------------------------------------------------------------


@pytest.mark.parametrize("end", ["success", "failure", "timeout", "stop", "ctrl-c"])
def test_an_in_process_job_leaves_nothing_behind(
    jobs: JobRunner, make_files: MakeFiles, end: str
) -> None:
    request = leak_request(jobs, make_files, end)
    name = request["TrainingJobName"]
    threads_before = set(threading.enumerate())
    running = Running(jobs, name)
    result: dict[str, Any] = {}

    def run() -> None:
        result["record"] = run_training_job(request, jobs.options())

    if end == "ctrl-c":
        main = threading.main_thread().ident
        assert main is not None

        def interrupt() -> None:
            running.wait_ready()
            signal.pthread_kill(main, signal.SIGINT)

        sender = threading.Thread(target=interrupt)
        sender.start()
        with pytest.raises(KeyboardInterrupt):
            run()
        sender.join()
        record = JobStore(jobs.home).get(name)
    else:
        runner = threading.Thread(target=run)
        runner.start()
        running.wait_ready()
        if end == "stop":
            env = {**os.environ, "EMULATOR_HOME": str(jobs.home)}
            stop = subprocess.run([*EMULATOR, "stop", name], env=env, capture_output=True)
            assert stop.returncode == 0, stop.stderr
        runner.join(timeout=60)
        record = result["record"]

    expected = {
        "success": ("Completed", "Completed"),
        "failure": ("Failed", "Failed"),
        "timeout": ("Stopped", "MaxRuntimeExceeded"),
        "stop": ("Stopped", "Stopped"),
        "ctrl-c": ("Stopped", "Stopped"),
    }[end]
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == expected
    if end == "failure":
        assert record["FailureReason"].startswith("AlgorithmError: nope\n, exit code: 3 (host")
    if expected[0] == "Stopped":
        stop_hosts_saved(jobs, record)
    assert_nothing_left(jobs, running)
    assert set(threading.enumerate()) - threads_before == set()  # feeders, log pumps, ...


# -- the CLI, ended by signals ------------------------------------------------------------


def start_cli(jobs: JobRunner, request: dict[str, Any]) -> subprocess.Popen[str]:
    request_file = jobs.output.parent / f"{request['TrainingJobName']}.json"
    request_file.write_text(json.dumps(request))
    env = {**os.environ, "EMULATOR_HOME": str(jobs.home), "TMPDIR": str(jobs.work_root)}
    command = [*EMULATOR, "run", str(request_file), "--stop-grace", "5", "--quiet"]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize(
    "signal_number", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"]
)
def test_an_interrupted_cli_job_stops_every_host_and_leaves_nothing_behind(
    jobs: JobRunner, make_files: MakeFiles, signal_number: int
) -> None:
    request = leak_request(jobs, make_files, "sleep")
    running = Running(jobs, request["TrainingJobName"])
    process = start_cli(jobs, request)
    running.wait_ready()
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    record = JobStore(jobs.home).get(running.name)
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == ("Stopped", "Stopped")
    stop_hosts_saved(jobs, record)
    assert_nothing_left(jobs, running)


@pytest.fixture
def running_jobs() -> Iterator[list[Running]]:
    """Jobs a test kills; whatever the test's outcome, what they left is released after it
    (FastFile servers the test froze, their mounts), so a failure never leaks."""
    runs: list[Running] = []
    yield runs
    for running in runs:
        for pid in running.server_pids:
            if _alive(pid):
                stop_process(pid)
        for mountpoint in running.mounts:
            force_unmount(mountpoint)


@pytest.mark.parametrize(
    ("server", "prunes"),
    [("exits", 1), ("hung", 1), ("exits", 4)],
    ids=["server-exits", "server-hung", "concurrent-prunes"],
)
def test_prune_after_sigkill_of_the_emulator_leaves_nothing_behind(
    jobs: JobRunner,
    make_files: MakeFiles,
    running_jobs: list[Running],
    server: str,
    prunes: int,
) -> None:
    request = leak_request(jobs, make_files, "sleep")
    running = Running(jobs, request["TrainingJobName"])
    running_jobs.append(running)
    process = start_cli(jobs, request)
    running.wait_ready()
    if server == "hung":  # the FastFile servers cannot notice their emulator is gone
        for pid in running.server_pids:
            os.kill(pid, signal.SIGSTOP)
    process.kill()
    process.communicate(timeout=30)
    assert jobs.leftovers(running.name) != []  # containers, network and work dir outlive it
    if server == "hung":
        assert all(_alive(pid) for pid in running.server_pids)
        assert any(m.fstype == FSTYPE and running.name in m.source for m in read_mounts())
    env = {**os.environ, "EMULATOR_HOME": str(jobs.home), "TMPDIR": str(jobs.work_root)}
    # Several prunes at once (two terminals, or test suites) each skip what another removes.
    started = [
        subprocess.Popen(
            [*EMULATOR, "prune"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(prunes)
    ]
    for pruning in started:
        _, stderr = pruning.communicate(timeout=60)
        assert pruning.returncode == 0, stderr
    assert_nothing_left(jobs, running)
    record = JobStore(jobs.home).get(running.name)
    assert record["TrainingJobStatus"] == "Failed"


def test_prune_detaches_fastfile_mounts_whose_server_died_wherever_they_are(
    jobs: JobRunner, make_files: MakeFiles, tmp_path: Path
) -> None:
    data = make_files({"x.bin": b"x" * 1000})
    mountpoint = tmp_path / "elsewhere" / "mnt"  # not under the temp dir prune scans
    mount = FastFileMount(
        DataSourceSpec("S3Prefix", str(data)), LocalSource(str(data)).entries(), mountpoint
    )
    mount.mount()
    try:
        assert mount.pid is not None
        os.kill(mount.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(mount.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert is_mounted(mountpoint)  # stale: every access fails with ENOTCONN
        env = {**os.environ, "EMULATOR_HOME": str(jobs.home), "TMPDIR": str(jobs.work_root)}
        pruned = subprocess.run([*EMULATOR, "prune"], env=env, capture_output=True, text=True)
        assert pruned.returncode == 0, pruned.stderr
        assert f"FUSE mount {mountpoint}" in pruned.stdout
        assert not is_mounted(mountpoint)
    finally:
        mount.unmount()
