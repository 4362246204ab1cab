"""Each host's container plan: image, entrypoint and command, environment, mounts, address."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from emulator.engine import ContainerPlan, JobNetwork, Mount
from emulator.plan.hosts import HostResources
from emulator.plan.layout import HostLayout
from emulator.request.spec import Host, JobSpec


def command_of(spec: JobSpec) -> list[str] | None:
    """The container's command: ``train`` when the request names neither entrypoint nor
    arguments (it replaces the image's CMD), the arguments when given, else the image's."""
    if spec.entrypoint is None and spec.arguments is None:
        return ["train"]
    return list(spec.arguments) if spec.arguments is not None else None


def container_environment(
    spec: JobSpec, region: str, aws_environment: Mapping[str, str]
) -> dict[str, str]:
    """The request's Environment plus what the platform sets; SM_* is the toolkit's job."""
    return {
        **aws_environment,
        **spec.environment,
        "TRAINING_JOB_NAME": spec.name,
        "TRAINING_JOB_ARN": spec.arn(region),
        "AWS_REGION": region,
    }


def container_plan(
    spec: JobSpec,
    layout: HostLayout,
    hosts: Sequence[Host],
    network: JobNetwork,
    *,
    environment: dict[str, str],
    resources: HostResources,
    extra_mounts: Sequence[Mount] = (),
) -> ContainerPlan:
    """The plan of ``layout``'s host: its /opt/ml mounts plus the staged channels'."""
    mounts = [Mount(target, source) for target, source in layout.mounts(spec).items()]
    names = [host.name for host in hosts]
    return ContainerPlan(
        job=spec.name,
        host=layout.host.name,
        image=spec.image,
        network=network.name,
        entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
        command=command_of(spec),
        environment=environment,
        mounts=[*mounts, *extra_mounts],
        gpus=resources.gpus,
        address=network.address(names.index(layout.host.name)),
        hosts_file=network.hosts_file(names),
        nano_cpus=resources.limits.nano_cpus,
        memory_bytes=resources.limits.memory_bytes,
    )
