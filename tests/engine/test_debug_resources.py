"""Resource use on the real engine: each host's memory and CPU sampled while the job runs and
stored as system metrics (never in FinalMetricDataList), the peaks against the instance type
in the CLI's summary, `emulator metrics` over a real job, and samplers that end with their
containers, leaving no thread or connection."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time

import pytest

from emulator import api
from emulator.engine import DockerEngine
from emulator.engine.stats import StatsStream
from emulator.state.store import CPU_PERCENT, MEMORY_BYTES, JobStore
from tests.fixtures.cli import EMULATOR
from tests.fixtures.jobs import (
    BUSYBOX,
    JobRunner,
    busybox_container,
    python_reader_members,
    unique_name,
)

pytestmark = pytest.mark.docker

MIB = 2**20
# Fills ``SIZE`` MiB at once (a repeated byte: every page is written), then keeps one core
# busy for ``HOLD`` seconds, printing a loss line before and after.
ALLOCATE = """
import os, time
size = int(os.environ["SIZE"]) * 2**20
print("loss=1.5", flush=True)
block = b"\\x01" * size
start = time.time()
while time.time() - start < float(os.environ["HOLD"]):
    pass
print("loss=0.5", flush=True)
"""


def sockets() -> int:
    """Sockets this process holds open (engine connections among them)."""
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, gone by now
            found += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return found


def test_memory_and_cpu_are_sampled_as_system_metrics(jobs: JobRunner) -> None:
    threads_before = set(threading.enumerate())
    sockets_before = sockets()
    members = python_reader_members(
        ALLOCATE,
        "File",
        60,
        algorithm={"MetricDefinitions": [{"Name": "loss", "Regex": "loss=([0-9.]+)"}]},
        Environment={"SIZE": "600", "HOLD": "3"},
    )
    record = jobs.run(jobs.request(**members), stop_grace_seconds=1)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    name = record["TrainingJobName"]

    store = JobStore(jobs.home)
    system = store.system_metrics(name)
    memory = [p.value for p in system if p.name == MEMORY_BYTES]
    cpu = [p.value for p in system if p.name == CPU_PERCENT]
    assert len(memory) >= 2 and cpu, system
    assert {p.host for p in system} == {"algo-1"}
    assert 600 * MIB <= max(memory) <= 680 * MIB  # the block, the interpreter and little else
    assert max(cpu) >= 50  # one core busy, on a shared machine

    # The record's shape stays SageMaker's: system metrics never reach it.
    assert [m["MetricName"] for m in record["FinalMetricDataList"]] == ["loss"]
    assert (
        api.describe(name, home=jobs.home)["FinalMetricDataList"] == record["FinalMetricDataList"]
    )
    assert {p.name for p in store.metrics(name)} == {"loss"}
    samples = api.metrics(name, home=jobs.home)
    assert {s.name for s in samples if not s.system} == {"loss"}
    assert len([s for s in samples if s.system]) == len(system)

    use = api.resource_use(name, home=jobs.home)
    assert use.fits and use.hosts[0].instance_type == "ml.m5.large"
    assert use.hosts[0].peak_memory_bytes == int(max(memory))

    assert set(threading.enumerate()) - threads_before == set()  # samplers, log pumps, ...
    assert sockets() == sockets_before


def cli_job(jobs: JobRunner, *flags: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    """`emulator run FLAGS` as ml.t3.medium (2 vCPUs, 4 GiB), in a process of its own."""
    name = unique_name("res")
    env = jobs.cli_environ()
    command = [*EMULATOR, "run", "--job-name", name, "--output", str(jobs.output)]
    command += ["--stop-grace", "1", "--instance-type", "ml.t3.medium", *flags]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    return name, done


def test_a_job_beyond_its_instance_memory_is_warned(jobs: JobRunner) -> None:
    # About 4.4 GiB touched for two seconds: ml.t3.medium has 4 GiB (the machine has more).
    members = python_reader_members(ALLOCATE, "File", 60, Environment={"SIZE": "4400", "HOLD": "2"})
    request_file = jobs.output.parent / "big.json"
    request_file.write_text(json.dumps(jobs.request(**members)))
    name, done = cli_job(jobs, str(request_file))
    assert done.returncode == 0, done.stderr
    assert "Resource use (peaks, sampled once a second):" in done.stderr
    warning = "warning: algo-1 peak 4.3 GiB: ml.t3.medium has 4 GiB; this job would be killed there"
    assert warning in done.stderr, done.stderr
    assert "Traceback" not in done.stderr

    listed = subprocess.run(
        [*EMULATOR, "metrics", name, "--format", "json"],
        env=jobs.cli_environ(),
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr
    points = json.loads(listed.stdout)["Points"]
    assert max(p["value"] for p in points if p["name"] == MEMORY_BYTES) > 4.3 * 2**30


def test_a_job_that_fits_is_not_warned_and_every_host_is_sampled(jobs: JobRunner) -> None:
    name, done = cli_job(
        jobs,
        "--image",
        BUSYBOX,
        "--entrypoint",
        "sh",
        "--entrypoint=-c",
        "--entrypoint",
        "sleep 2.5",
        "--instance-count",
        "2",
    )
    assert done.returncode == 0, done.stderr
    assert "warning:" not in done.stderr
    for host in ("algo-1", "algo-2"):
        assert f"  {host}  memory " in done.stderr and " of 4 GiB, " in done.stderr
    system = JobStore(jobs.home).system_metrics(name)
    assert {p.host for p in system if p.name == MEMORY_BYTES} == {"algo-1", "algo-2"}


# -- the stats stream itself ----------------------------------------------------------------


def test_a_vanished_or_closed_container_ends_its_samples_quietly() -> None:
    engine = DockerEngine()
    try:
        for ending in ("removed", "closed", "exited"):
            container = busybox_container(engine, "sleep 1.5" if ending == "exited" else "sleep 60")
            stream = StatsStream(engine, container)
            got: list[object] = []
            reader = threading.Thread(target=got.extend, args=(stream,))
            reader.start()
            container.start()
            time.sleep(2.5)
            if ending == "closed":  # just after a sample: the next is a second away
                seen = len(got)
                while len(got) == seen:
                    time.sleep(0.01)
            began = time.monotonic()
            if ending == "removed":
                container.remove()
            elif ending == "closed":
                stream.close()
            reader.join(10)
            assert not reader.is_alive(), ending
            assert got, ending
            if ending == "closed":
                assert time.monotonic() - began < 0.5  # the blocked read woke up
            container.remove()
    finally:
        engine.close()
