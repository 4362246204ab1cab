"""`emulator logs --follow` and `emulator exec` (issue 12) against a running job: a follower in
a process of its own gets every line and ends with the job; a command runs in algo-2 of a
two-host job with its exit status passed through; a finished job is refused with exit 2."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from emulator import api
from tests.fixtures.cli import EMULATOR, wait_for_status
from tests.fixtures.jobs import BUSYBOX, JobRunner

pytestmark = pytest.mark.timeout(120)

# Each host prints 12 lines over about 1.2 s, the last without a newline.
PRINTER = (
    'for i in $(seq 1 11); do echo "$(hostname) line $i"; sleep 0.1; done; '
    'printf "%s last" "$(hostname)"'
)


def emulator(jobs: JobRunner, *args: str, stdin: str = "", **popen: Any) -> subprocess.Popen[str]:
    """`emulator ARGS` in a process of its own, with the jobs' state dir, stdin piped."""
    env = jobs.cli_environ()
    return subprocess.Popen(
        [*EMULATOR, *args],
        env=env,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def busybox_job(jobs: JobRunner, script: str, hosts: int) -> dict[str, Any]:
    return jobs.request(
        AlgorithmSpecification={
            "TrainingImage": BUSYBOX,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["sh", "-c", script],
        },
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": hosts, "VolumeSizeInGB": 1},
    )


@pytest.fixture
def background(jobs: JobRunner) -> Iterator[list[threading.Thread]]:
    """The threads running jobs; whatever a test left running is stopped at its end."""
    threads: list[threading.Thread] = []
    yield threads
    for job in api.list_jobs(home=jobs.home):
        if job["TrainingJobStatus"] == "InProgress":
            api.stop(job["TrainingJobName"], home=jobs.home)
    for thread in threads:
        thread.join(60)


def run_in_background(
    jobs: JobRunner, request: dict[str, Any], threads: list[threading.Thread]
) -> dict[str, Any]:
    """Run the job in a thread of this process (its emulator: alive while the test runs);
    the returned dict gets its record once it has ended."""
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(jobs.run(request, stop_grace_seconds=1))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    threads.append(thread)
    wait_for_status(jobs.home, request["TrainingJobName"], "Training")
    return result


def test_follow_from_another_process_gets_every_line_and_ends_with_the_job(
    jobs: JobRunner, background: list[threading.Thread]
) -> None:
    request = busybox_job(jobs, PRINTER, hosts=2)
    name = request["TrainingJobName"]
    record = run_in_background(jobs, request, background)
    with emulator(jobs, "logs", name, "--follow") as follower:
        assert follower.stdout is not None and follower.stderr is not None
        first = follower.stdout.readline()
        assert first.startswith(("[algo-1] algo-1 line", "[algo-2] algo-2 line"))
        # a line came while the job still ran: followed, not read at the end
        assert api.describe(name, home=jobs.home)["TrainingJobStatus"] == "InProgress"
        rest = follower.stdout.read()  # not communicate(): it skips what readline buffered
        assert follower.wait(60) == 0, follower.stderr.read()
    assert record["TrainingJobStatus"] == "Completed"  # ended only once the job had
    lines = [first.rstrip("\n"), *rest.splitlines()]
    for host in ("algo-1", "algo-2"):
        mine = [line for line in lines if line.startswith(f"[{host}] ")]
        expected = [f"[{host}] {host} line {i}" for i in range(1, 12)] + [f"[{host}] {host} last"]
        assert mine == expected
    assert len(lines) == 24
    # one host only, and the same lines once the job has ended (no --follow: at once)
    algo2 = emulator(jobs, "logs", name, "--host", "algo-2", "--follow")
    out, _ = algo2.communicate(timeout=30)
    assert out.splitlines() == [line for line in lines if line.startswith("[algo-2] ")]


def test_exec_runs_in_algo_2_and_passes_its_exit_status(
    jobs: JobRunner, background: list[threading.Thread]
) -> None:
    request = busybox_job(jobs, "sleep 60", hosts=2)
    name = request["TrainingJobName"]
    record = run_in_background(jobs, request, background)
    config = "/opt/ml/input/config/resourceconfig.json"
    script = f"hostname; cat {config}; echo; read word; echo got $word; exit 7"
    exec_ = emulator(jobs, "exec", name, "--host", "algo-2", "--", "sh", "-c", script, stdin=True)
    out, err = exec_.communicate("hello\n", timeout=60)
    assert exec_.returncode == 7, err
    lines = out.splitlines()
    assert lines[0] == "algo-2"
    assert json.loads("\n".join(lines[1:-1]))["current_host"] == "algo-2"
    assert lines[-1] == "got hello"  # stdin reaches the command
    assert api.exec_in_job(name, ["sh", "-c", "exit 0"], home=jobs.home) == 0  # algo-1
    api.stop(name, home=jobs.home)
    for thread in background:
        thread.join(60)
    assert record["TrainingJobStatus"] == "Stopped"
    refused = emulator(jobs, "exec", name, "--", "true")
    _, err = refused.communicate(timeout=30)
    assert refused.returncode == 2
    assert f"error: Training job '{name}' is not running (status Stopped)" in err
    assert jobs.leftovers(name) == []


def test_exec_into_a_host_that_has_exited_is_refused(
    jobs: JobRunner, background: list[threading.Thread]
) -> None:
    request = busybox_job(jobs, 'test "$(hostname)" = algo-2 && exit 0; sleep 60', hosts=2)
    name = request["TrainingJobName"]
    run_in_background(jobs, request, background)
    deadline = time.monotonic() + 30
    while True:
        refused = emulator(jobs, "exec", name, "--host", "algo-2", "--", "true")
        _, err = refused.communicate(timeout=30)
        if refused.returncode == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert refused.returncode == 2
    assert f"algo-2 of training job '{name}' is not running (its container has exited)" in err
    api.stop(name, home=jobs.home)
