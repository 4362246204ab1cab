"""GPUs and CPU/memory limits of instance types (CONTRACT.md section 6): device requests in the
container's configuration, a clear refusal before start where the engine has no GPUs (unless
--gpus 0), and limits behind --apply-instance-limits."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from emulator.engine import Container, ContainerPlan, DockerEngine
from emulator.errors import EnvironmentProblem
from emulator.plan.hosts import (
    ALL_GPUS,
)
from emulator.state.store import JobStore
from tests.fixtures.cli import EMULATOR
from tests.fixtures.inspect import inspecting_sink
from tests.fixtures.jobs import PROBE, JobRunner, unique_name


def one_host(instance_type: str) -> dict[str, Any]:
    return {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 1}


@pytest.fixture(scope="module")
def engine_has_gpus() -> bool:
    engine = DockerEngine()
    try:
        return engine.gpu_support()
    finally:
        engine.close()


@pytest.fixture
def no_gpus(engine_has_gpus: bool) -> None:
    if engine_has_gpus:
        pytest.skip("this engine can give containers GPUs")


@pytest.mark.docker
@pytest.mark.parametrize(
    ("instance_type", "gpus", "said"),
    [
        ("ml.g4dn.xlarge", None, "ml.g4dn.xlarge has 1 GPU per host"),
        ("ml.p3.8xlarge", None, "ml.p3.8xlarge has 4 GPUs per host"),
        ("local_gpu", None, "local_gpu has all GPUs per host"),
        ("ml.m5.large", ALL_GPUS, "--gpus asks for all GPUs per host"),
    ],
)
def test_gpus_are_refused_before_start_on_an_engine_without_them(
    jobs: JobRunner, no_gpus: None, instance_type: str, gpus: int | None, said: str
) -> None:
    request = jobs.request(ResourceConfig=one_host(instance_type))
    with pytest.raises(EnvironmentProblem) as refused:
        jobs.run(request, gpus=gpus)
    message = str(refused.value)
    assert said in message
    assert "cannot give containers GPUs" in message
    assert "--gpus 0" in message
    assert JobStore(jobs.home).all_jobs() == []  # nothing was created
    assert jobs.leftovers(request["TrainingJobName"]) == []


@pytest.mark.docker
def test_gpus_0_runs_a_gpu_instance_type_without_gpus(jobs: JobRunner, no_gpus: None) -> None:
    seen: dict[str, dict[str, Any]] = {}
    request = jobs.request(ResourceConfig=one_host("ml.g4dn.xlarge"))
    record = jobs.run(request, gpus=0, log_sink=inspecting_sink(jobs, request, seen))
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert not seen["algo-1"]["HostConfig"].get("DeviceRequests")


@pytest.mark.docker
def test_the_cli_refuses_gpus_with_a_clear_message_and_runs_with_gpus_0(
    jobs: JobRunner, no_gpus: None
) -> None:
    env = {**os.environ, "EMULATOR_HOME": str(jobs.home), "TMPDIR": str(jobs.work_root)}
    base = [*EMULATOR, "run", "--quiet", "--image", PROBE, "--output", str(jobs.output)]
    base += ["--instance-type", "ml.g4dn.xlarge"]
    refused = subprocess.run(
        [*base, "--job-name", unique_name()], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert "ml.g4dn.xlarge has 1 GPU per host" in refused.stderr
    assert "Traceback" not in refused.stderr
    ran = subprocess.run(
        [*base, "--gpus", "0", "--job-name", unique_name()], env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    wrong = subprocess.run([*base, "--gpus", "many"], env=env, capture_output=True, text=True)
    assert wrong.returncode == 2 and "--gpus" in wrong.stderr


@contextmanager
def gpu_container(gpus: int) -> Iterator[Container]:
    """A created (not started) probe container asking for ``gpus``; removed afterwards."""
    engine = DockerEngine()
    job = unique_name("gpu")
    network = engine.create_network(f"sm-{job}", job, internal=False, hosts=1)
    try:
        plan = ContainerPlan(
            job=job,
            host="algo-1",
            image=PROBE,
            network=network.name,
            entrypoint=None,
            command=["train"],
            environment={},
            mounts=[],
            gpus=gpus,
            address=network.address(0),
            hosts_file=network.hosts_file(["algo-1"]),
        )
        container = engine.create_container(plan, f"sm-{job}-algo-1")
        try:
            yield container
        finally:
            container.remove()
    finally:
        engine.remove_network(network.name)
        engine.close()


@pytest.mark.docker
@pytest.mark.parametrize(("gpus", "count"), [(1, 1), (4, 4), (ALL_GPUS, -1)])
def test_gpus_are_asked_with_a_device_request(gpus: int, count: int) -> None:
    # Created, never started: the configuration is what the engine would give the GPU driver.
    with gpu_container(gpus) as container:
        requests = container.inspect()["HostConfig"]["DeviceRequests"]
    wanted = ("Driver", "Count", "Capabilities")
    assert [{key: r[key] for key in wanted} for r in requests] == [
        {"Driver": "", "Count": count, "Capabilities": [["gpu"]]}
    ]


@pytest.mark.docker
def test_starting_a_gpu_container_on_an_engine_without_a_gpu_driver_says_so(
    no_gpus: None,
) -> None:
    with gpu_container(1) as container, pytest.raises(EnvironmentProblem) as refused:
        container.start()
    assert "cannot give algo-1 its GPUs" in str(refused.value)
    assert "--gpus 0" in str(refused.value)
