"""Everything a job can be refused for before anything of it exists: the work root, sensitive
host paths (plan/safety.py), --code, --shell and --publish, the image, GPUs and limits, every
channel's listing, the output and synced locations, the credentials for the containers."""

from __future__ import annotations

from dataclasses import dataclass

from emulator.config import S3Settings
from emulator.engine import DockerEngine, Mount
from emulator.finish import publish
from emulator.plan.code import mount_code
from emulator.plan.credentials import container_credentials
from emulator.plan.hosts import HostResources, plan_resources
from emulator.plan.safety import check_entries, check_locations
from emulator.request.spec import JobSpec
from emulator.run.checkpointing import check_checkpoints
from emulator.run.debugging import check_debugging
from emulator.run.options import RunOptions
from emulator.run.signals import deferred
from emulator.run.workdir import check_work_root
from emulator.stage.stager import ResolvedChannel, resolve_channels


@dataclass(frozen=True)
class Prepared:
    """What the preflight found, for the stages."""

    spec: JobSpec  # with --code's changes
    channels: dict[str, ResolvedChannel]
    resources: dict[str, HostResources]  # per host: GPUs and limits
    code_mounts: list[Mount]  # --code: DIR read-only at /opt/ml/code
    aws_environment: dict[str, str]  # {} unless pass_aws_credentials


def preflight(
    spec: JobSpec, options: RunOptions, engine: DockerEngine, s3: S3Settings | None
) -> Prepared:
    """Everything that can be refused before anything exists (EmulatorError)."""
    check_work_root(options.work_root)
    if not options.allow_sensitive_paths:
        check_locations(spec)
    spec, code_mounts = mount_code(spec, options)  # --code
    check_debugging(spec, options)  # --shell, --publish
    deferred(engine.require_image, spec.image)
    resources = _host_resources(spec, options, engine)
    channels = resolve_channels(spec, s3)
    if not options.allow_sensitive_paths:
        for resolved in channels.values():
            check_entries(resolved.channel.name, resolved.entries)
    publish.check_output_location(spec, s3)
    check_checkpoints(spec, s3)
    aws_environment = container_credentials(
        spec, options.pass_aws_credentials, s3, options.container_s3
    )
    return Prepared(spec, channels, resources, code_mounts, aws_environment)


def _host_resources(
    spec: JobSpec, options: RunOptions, engine: DockerEngine
) -> dict[str, HostResources]:
    """GPUs (refused up front when the engine has none) and limits of every host."""
    resources, notes = plan_resources(
        spec.resources.hosts(),
        gpus=options.gpus,
        apply_limits=options.apply_instance_limits,
        gpu_support=lambda: deferred(engine.gpu_support),
        engine_cpus=lambda: deferred(engine.cpu_count),
    )
    for note in notes:
        options.notice(note)
    return resources
