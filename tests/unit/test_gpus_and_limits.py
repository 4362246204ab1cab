"""GPUs and CPU/memory limits of instance types (CONTRACT.md section 6): device requests in the
container's configuration, a clear refusal before start where the engine has no GPUs (unless
--gpus 0), and limits behind --apply-instance-limits."""

from __future__ import annotations

from typing import Any

import pytest

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
