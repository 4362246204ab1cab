"""System metrics (each host's CPU and memory, sampled by ``run/resources.py``) and what they
say about the job's instance types: the peaks against each type's vCPUs and memory.

System metrics sit beside the MetricDefinitions points in the store, in a table of their own:
``emulator metrics`` shows both, DescribeTrainingJob (FinalMetricDataList) never shows them.

    system/memory_bytes   memory used, the inactive file cache left out (``docker stats``)
    system/cpu_percent    percent of one core (100 = one core busy; SageMaker's CPUUtilization
                          counts the same way, up to 100 x vCPUs)

The engine samples once a second: a peak shorter than that may be missed. GPU memory is not
sampled: the engine's stats carry no GPU figures (``GPU_MEMORY_NOTE``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from emulator.plan.hosts import GIB, INSTANCE_LIMITS, gpu_count
from emulator.request.spec import InstanceGroup, ResourceSpec

# The metric names re-exported (``as``): cli/ reads them here, as it may not import state/.
from emulator.state.store import CPU_PERCENT as CPU_PERCENT
from emulator.state.store import MEMORY_BYTES as MEMORY_BYTES
from emulator.state.store import MetricPoint

GPU_MEMORY_NOTE = "GPU memory is not sampled: the Docker engine's stats API reports no GPU figures"
LOCAL_TYPES = ("local", "local_gpu")


@dataclass(frozen=True)
class MetricSample:
    """One point of a job's metric: a MetricDefinitions point or a system metric's sample."""

    name: str
    host: str
    timestamp: float  # seconds since the epoch
    value: float
    system: bool  # a system metric (resource use), not one of the job's MetricDefinitions

    @property
    def time(self) -> str:
        """The moment in ISO 8601, UTC, to the millisecond."""
        moment = datetime.fromtimestamp(self.timestamp, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "time": self.time,
            "timestamp": self.timestamp,
            "value": self.value,
            "source": "system" if self.system else "definitions",
        }


def metric_samples(
    definitions: Iterable[MetricPoint], system: Iterable[MetricPoint]
) -> list[MetricSample]:
    """Both kinds of points as one series, by time (a stable sort: points of one moment keep
    their order, MetricDefinitions points first)."""
    samples = [MetricSample(p.name, p.host, p.timestamp, p.value, False) for p in definitions]
    samples += [MetricSample(p.name, p.host, p.timestamp, p.value, True) for p in system]
    samples.sort(key=lambda sample: sample.timestamp)
    return samples


@dataclass(frozen=True)
class HostUse:
    """One host's peaks against its instance type's figures."""

    host: str
    instance_type: str
    samples: int  # memory samples taken
    peak_memory_bytes: int | None  # None: no sample
    peak_cpu_percent: float | None  # of one core; None: fewer than two samples
    instance_vcpus: int | None  # None: a local or unknown type
    instance_memory_bytes: int | None
    warnings: tuple[str, ...]  # the job would not fit there
    notes: tuple[str, ...]  # why nothing was compared, GPU memory

    @property
    def fits(self) -> bool:
        return not self.warnings


@dataclass(frozen=True)
class ResourceUse:
    """The job's resource use, host by host (``emulator.api.resource_use``)."""

    job: str
    hosts: tuple[HostUse, ...]

    @property
    def warnings(self) -> list[str]:
        return [warning for host in self.hosts for warning in host.warnings]

    @property
    def fits(self) -> bool:
        return not self.warnings


def job_hosts(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(host, instance type) of each host of a Describe record, algo-1 first."""
    config = record.get("ResourceConfig") or {}
    groups = tuple(
        InstanceGroup(g["InstanceGroupName"], g["InstanceType"], g["InstanceCount"])
        for g in config.get("InstanceGroups") or ()
    )
    spec = ResourceSpec(
        config.get("InstanceType", ""), int(config.get("InstanceCount", 1)), instance_groups=groups
    )
    return [(host.name, host.instance_type) for host in spec.hosts()]


def resource_use(record: dict[str, Any], points: Sequence[MetricPoint]) -> ResourceUse:
    """Each host's peaks (from its system metrics) against its instance type."""
    hosts = [
        _host_use(host, instance_type, [p for p in points if p.host == host])
        for host, instance_type in job_hosts(record)
    ]
    return ResourceUse(str(record.get("TrainingJobName", "")), tuple(hosts))


def _host_use(host: str, instance_type: str, points: Sequence[MetricPoint]) -> HostUse:
    memory = [p.value for p in points if p.name == MEMORY_BYTES]
    cpu = [p.value for p in points if p.name == CPU_PERCENT]
    peak_memory = int(max(memory)) if memory else None
    peak_cpu = max(cpu) if cpu else None
    warnings: list[str] = []
    notes: list[str] = []
    figures = INSTANCE_LIMITS.get(instance_type)
    vcpus, memory_gib = figures if figures is not None else (None, None)
    if not memory:
        notes.append(
            f"{host}: no resource samples (the engine samples once a second; it ran for less, "
            "or sampling was not possible)"
        )
    if instance_type in LOCAL_TYPES:
        notes.append(f"{host} runs as {instance_type!r}: no instance type to compare with")
    elif figures is None:
        notes.append(f"{host}: no vCPU and memory figures known for {instance_type}: not compared")
    if peak_memory is not None and memory_gib is not None and peak_memory > memory_gib * GIB:
        warnings.append(
            f"{host} peak {format_bytes(peak_memory)}: {instance_type} has {memory_gib} GiB; "
            "this job would be killed there"
        )
    if peak_cpu is not None and vcpus is not None and peak_cpu > vcpus * 100:
        warnings.append(
            f"{host} peak CPU {peak_cpu / 100:.1f} cores: {instance_type} has {vcpus} vCPUs; "
            "this job would run slower there"
        )
    if instance_type == "local_gpu" or gpu_count(instance_type):
        notes.append(f"{host}: {GPU_MEMORY_NOTE}")
    return HostUse(
        host,
        instance_type,
        len(memory),
        peak_memory,
        peak_cpu,
        vcpus,
        None if memory_gib is None else memory_gib * GIB,
        tuple(warnings),
        tuple(notes),
    )


def format_bytes(count: float) -> str:
    """Bytes for people: GiB from 1 GiB on, else MiB."""
    if count >= GIB:
        return f"{count / GIB:.1f} GiB"
    return f"{count / 1024**2:.0f} MiB"
