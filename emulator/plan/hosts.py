"""What an instance type asks of the local machine: GPUs, and (behind a flag) CPU and memory.

GPUs (CONTRACT.md section 6, from the SageMaker SDK's instance table, plus the families the
SDK added since with the same shape):

    1 GPU    g4dn/g5/g6/g6e.{x,2x,4x,8x,16x}large, p3.2xlarge, p2.xlarge, p5.4xlarge
    4 GPUs   g4dn/g5/g6/g6e.12xlarge, g5/g6/g6e.24xlarge, p3.8xlarge
    8 GPUs   g5/g6/g6e.48xlarge, p3.16xlarge, p3dn.24xlarge, p4d/p4de.24xlarge,
             p5/p5e/p5en.48xlarge, p2.8xlarge, p6-b200/p6-b300.48xlarge
    16 GPUs  p2.16xlarge
    all      local_gpu, and any other size of a GPU family (ml.g*, ml.p*) missing above
    none     local and every other type (CPU instances; Trainium/Inferentia devices are not
             GPUs and are not passed through)

``--gpus N`` (``RunOptions.gpus``) replaces the instance type's count for every host: ``0`` runs
without GPUs, ``all`` (-1) asks for every GPU of the machine.

CPU and memory limits (``--apply-instance-limits``): each container gets the vCPUs
(``NanoCpus``) and memory (``Memory``) of its instance type from ``INSTANCE_LIMITS``, the vCPUs
capped at the engine's CPU count (Docker refuses more). Types missing from the table (``local``,
``local_gpu``, families not listed) run without limits, and the job says so in a notice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from emulator.errors import EnvironmentProblem
from emulator.request.spec import Host

ALL_GPUS = -1
GIB = 1024**3
NANO = 1_000_000_000

_SMALL = ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")
_G_FAMILIES = ("g4dn", "g5", "g6", "g6e")


def _gpu_table() -> dict[str, int]:
    table: dict[str, int] = {}
    for family in _G_FAMILIES:
        table.update({f"ml.{family}.{size}": 1 for size in _SMALL})
        table[f"ml.{family}.12xlarge"] = 4
        if family != "g4dn":
            table[f"ml.{family}.24xlarge"] = 4
            table[f"ml.{family}.48xlarge"] = 8
    table.update(
        {
            "ml.p2.xlarge": 1,
            "ml.p2.8xlarge": 8,
            "ml.p2.16xlarge": 16,
            "ml.p3.2xlarge": 1,
            "ml.p3.8xlarge": 4,
            "ml.p3.16xlarge": 8,
            "ml.p3dn.24xlarge": 8,
            "ml.p4d.24xlarge": 8,
            "ml.p4de.24xlarge": 8,
            "ml.p5.4xlarge": 1,
            "ml.p5.48xlarge": 8,
            "ml.p5e.48xlarge": 8,
            "ml.p5en.48xlarge": 8,
            "ml.p6-b200.48xlarge": 8,
            "ml.p6-b300.48xlarge": 8,
        }
    )
    return table


GPUS_BY_TYPE: dict[str, int] = _gpu_table()

# Instance type -> (vCPUs, memory in GiB), from the EC2 instance type pages.
INSTANCE_LIMITS: dict[str, tuple[int, int]] = {
    "ml.t3.medium": (2, 4),
    "ml.t3.large": (2, 8),
    "ml.t3.xlarge": (4, 16),
    "ml.t3.2xlarge": (8, 32),
    "ml.m5.large": (2, 8),
    "ml.m5.xlarge": (4, 16),
    "ml.m5.2xlarge": (8, 32),
    "ml.m5.4xlarge": (16, 64),
    "ml.m5.12xlarge": (48, 192),
    "ml.m5.24xlarge": (96, 384),
    "ml.c5.xlarge": (4, 8),
    "ml.c5.2xlarge": (8, 16),
    "ml.c5.4xlarge": (16, 32),
    "ml.c5.9xlarge": (36, 72),
    "ml.c5.18xlarge": (72, 144),
    "ml.g4dn.xlarge": (4, 16),
    "ml.g4dn.2xlarge": (8, 32),
    "ml.g4dn.4xlarge": (16, 64),
    "ml.g4dn.8xlarge": (32, 128),
    "ml.g4dn.12xlarge": (48, 192),
    "ml.g4dn.16xlarge": (64, 256),
    "ml.g5.xlarge": (4, 16),
    "ml.g5.2xlarge": (8, 32),
    "ml.g5.4xlarge": (16, 64),
    "ml.g5.8xlarge": (32, 128),
    "ml.g5.12xlarge": (48, 192),
    "ml.g5.16xlarge": (64, 256),
    "ml.g5.24xlarge": (96, 384),
    "ml.g5.48xlarge": (192, 768),
    "ml.p3.2xlarge": (8, 61),
    "ml.p3.8xlarge": (32, 244),
    "ml.p3.16xlarge": (64, 488),
    "ml.p3dn.24xlarge": (96, 768),
    "ml.p4d.24xlarge": (96, 1152),
    "ml.p5.48xlarge": (192, 2048),
}


def gpu_count(instance_type: str) -> int:
    """GPUs of one host of ``instance_type``: a count, ``ALL_GPUS`` or 0."""
    if instance_type == "local_gpu":
        return ALL_GPUS
    if instance_type in GPUS_BY_TYPE:
        return GPUS_BY_TYPE[instance_type]
    parts = instance_type.split(".")
    if len(parts) == 3 and parts[0] == "ml" and parts[1][:1] in ("g", "p"):
        return ALL_GPUS  # a GPU family the table does not know yet
    return 0


def parse_gpus(text: str) -> int:
    """The value of ``--gpus``: a count >= 0, or ``all``."""
    if text.strip().lower() == "all":
        return ALL_GPUS
    if text.strip().isdigit():
        return int(text)
    raise ValueError(f"--gpus {text!r}: give a number of GPUs (0 for none) or 'all'")


def describe_gpus(count: int) -> str:
    return "all GPUs" if count == ALL_GPUS else f"{count} GPU{'s' * (count != 1)}"


@dataclass(frozen=True)
class Limits:
    """CPU and memory limits of one container (None: unlimited)."""

    nano_cpus: int | None = None
    memory_bytes: int | None = None
    note: str | None = None  # why the limits differ from the instance type, if they do


def instance_limits(instance_type: str, engine_cpus: int) -> Limits:
    """The vCPUs and memory of ``instance_type`` as container limits (see the module doc)."""
    known = INSTANCE_LIMITS.get(instance_type)
    if known is None:
        return Limits(note=f"no CPU/memory figures known for {instance_type}: no limits applied")
    vcpus, memory_gib = known
    note = None
    if engine_cpus and vcpus > engine_cpus:
        note = (
            f"{instance_type} has {vcpus} vCPUs but the Docker engine has {engine_cpus}: "
            f"limited to {engine_cpus}"
        )
        vcpus = engine_cpus
    return Limits(vcpus * NANO, memory_gib * GIB, note)


@dataclass(frozen=True)
class HostResources:
    """What one host's container asks of the machine beyond its image."""

    gpus: int = 0
    limits: Limits = field(default_factory=Limits)


def plan_resources(
    hosts: Sequence[Host],
    *,
    gpus: int | None,
    apply_limits: bool,
    gpu_support: Callable[[], bool],
    engine_cpus: Callable[[], int],
) -> tuple[dict[str, HostResources], list[str]]:
    """Each host's GPUs (``gpus`` replacing the instance type's) and, with ``apply_limits``,
    CPU/memory limits; plus notes for the user. The engine is asked (``gpu_support``,
    ``engine_cpus``) only when needed. Raises EnvironmentProblem, before anything exists,
    when hosts want GPUs the engine cannot give."""
    if gpus is not None and gpus < ALL_GPUS:
        raise ValueError(f"gpus must be a count >= 0 or {ALL_GPUS} (all), not {gpus}")
    wanted = {host.name: gpu_count(host.instance_type) if gpus is None else gpus for host in hosts}
    wanting = [host for host in hosts if wanted[host.name]]
    if wanting and not gpu_support():
        host = wanting[0]
        asked = (
            f"{host.instance_type} has {describe_gpus(wanted[host.name])}"
            if gpus is None
            else f"--gpus asks for {describe_gpus(gpus)}"
        )
        raise EnvironmentProblem(
            f"{asked} per host, but the Docker engine cannot give containers GPUs (it lists no "
            "nvidia runtime, and this machine has no /dev/nvidiactl with the NVIDIA container "
            "toolkit). Run without GPUs with --gpus 0 (RunOptions.gpus=0), or use a CPU "
            "instance type"
        )
    cpus = engine_cpus() if apply_limits else 0
    resources, notes = {}, set()
    for host in hosts:
        limits = instance_limits(host.instance_type, cpus) if apply_limits else Limits()
        if limits.note:
            notes.add(limits.note)
        resources[host.name] = HostResources(wanted[host.name], limits)
    return resources, sorted(notes)
