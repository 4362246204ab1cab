"""GPUs and CPU/memory limits of instance types (CONTRACT.md section 6): device requests in the
container's configuration, a clear refusal before start where the engine has no GPUs (unless
--gpus 0), and limits behind --apply-instance-limits."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from emulator.engine import Container, ContainerPlan, DockerEngine
from emulator.errors import EnvironmentProblem
from emulator.plan.hosts import (
    ALL_GPUS,
    GIB,
    NANO,
    Limits,
    gpu_count,
    instance_limits,
    parse_gpus,
    plan_resources,
)
from emulator.request.spec import Host
from emulator.state.store import JobStore
from tests.fixtures.inspect import inspecting_sink
from tests.fixtures.jobs import PROBE, JobRunner, unique_name

EMULATOR = [sys.executable, "-m", "emulator"]


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


# -- the tables ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance_type", "gpus"),
    [
        ("ml.m5.large", 0),
        ("ml.c5.xlarge", 0),
        ("local", 0),
        ("ml.trn1.2xlarge", 0),
        ("ml.g4dn.xlarge", 1),
        ("ml.g4dn.16xlarge", 1),
        ("ml.g5.2xlarge", 1),
        ("ml.p3.2xlarge", 1),
        ("ml.g4dn.12xlarge", 4),
        ("ml.g5.12xlarge", 4),
        ("ml.g5.24xlarge", 4),
        ("ml.p3.8xlarge", 4),
        ("ml.g5.48xlarge", 8),
        ("ml.p3.16xlarge", 8),
        ("ml.p3dn.24xlarge", 8),
        ("ml.p4d.24xlarge", 8),
        ("ml.p4de.24xlarge", 8),
        ("ml.p5.48xlarge", 8),
        ("local_gpu", ALL_GPUS),
        ("ml.g7.2xlarge", ALL_GPUS),  # a GPU family the table does not know: every GPU
    ],
)
def test_gpus_of_instance_types(instance_type: str, gpus: int) -> None:
    assert gpu_count(instance_type) == gpus


@pytest.mark.parametrize(("text", "gpus"), [("0", 0), ("2", 2), ("all", ALL_GPUS), ("ALL", -1)])
def test_the_gpus_flag(text: str, gpus: int) -> None:
    assert parse_gpus(text) == gpus


@pytest.mark.parametrize("text", ["-1", "two", "", "1.5"])
def test_the_gpus_flag_refuses_other_values(text: str) -> None:
    with pytest.raises(ValueError, match="number of GPUs"):
        parse_gpus(text)


def test_instance_limits_are_the_instance_types_capped_at_the_engines_cpus() -> None:
    assert instance_limits("ml.m5.large", 64) == instance_limits("ml.m5.large", 2)
    limits = instance_limits("ml.m5.large", 64)
    assert (limits.nano_cpus, limits.memory_bytes, limits.note) == (2 * NANO, 8 * GIB, None)
    capped = instance_limits("ml.m5.4xlarge", 6)
    assert (capped.nano_cpus, capped.memory_bytes) == (6 * NANO, 64 * GIB)
    assert capped.note is not None and "16 vCPUs" in capped.note
    unknown = instance_limits("local", 8)
    assert (unknown.nano_cpus, unknown.memory_bytes) == (None, None)
    assert unknown.note is not None and "no limits" in unknown.note


# -- on the engine ------------------------------------------------------------------------


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


def heterogeneous() -> list[Host]:
    return [
        Host("algo-1", "cpu", "ml.m5.large"),
        Host("algo-2", "gpu", "ml.g5.12xlarge"),
        Host("algo-3", "gpu", "ml.g5.12xlarge"),
    ]


def never() -> Any:
    def called() -> Any:
        raise AssertionError("the engine was asked needlessly")

    return called


def test_each_host_gets_its_instance_types_gpus_and_limits() -> None:
    resources, notes = plan_resources(
        heterogeneous(),
        gpus=None,
        apply_limits=True,
        gpu_support=lambda: True,
        engine_cpus=lambda: 16,
    )
    assert {host: r.gpus for host, r in resources.items()} == {
        "algo-1": 0,
        "algo-2": 4,
        "algo-3": 4,
    }
    assert resources["algo-1"].limits.nano_cpus == 2 * NANO
    assert resources["algo-2"].limits.nano_cpus == 16 * NANO  # 48 vCPUs capped at 16
    assert notes == ["ml.g5.12xlarge has 48 vCPUs but the Docker engine has 16: limited to 16"]


def test_gpus_0_and_no_limits_ask_nothing_of_the_engine() -> None:
    resources, notes = plan_resources(
        heterogeneous(), gpus=0, apply_limits=False, gpu_support=never(), engine_cpus=never()
    )
    assert all(r.gpus == 0 and r.limits == Limits() for r in resources.values())
    assert notes == []


def test_hosts_wanting_gpus_are_refused_on_an_engine_without_them() -> None:
    with pytest.raises(EnvironmentProblem, match=r"ml\.g5\.12xlarge has 4 GPUs per host"):
        plan_resources(
            heterogeneous(),
            gpus=None,
            apply_limits=False,
            gpu_support=lambda: False,
            engine_cpus=never(),
        )
    with pytest.raises(ValueError, match="gpus must be"):
        plan_resources(
            heterogeneous(),
            gpus=-2,
            apply_limits=False,
            gpu_support=never(),
            engine_cpus=never(),
        )
