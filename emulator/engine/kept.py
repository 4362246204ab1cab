"""The containers a job run with --keep leaves (``LABEL_KEPT``), and post-mortem shells.

A kept container is found by its labels (the job's, and ``LABEL_KEPT`` naming its work dir); it
outlives its emulator, and only ``emulator rm`` / ``emulator prune --kept`` remove it (the
reaper leaves it alone). What it ran with (``Config.Env``, its mounts, its limits) is read
back from the engine: that is the truth for a post-mortem shell, whatever the request said.

A post-mortem shell is a NEW container of the job's image, created here through the Engine
API (labelled as the job's, with ``LABEL_SHELL``, so ``prune`` removes it should its emulator
die), then started and attached on the user's terminal by the docker CLI (``docker start
-ai``: raw mode, resizing and signals are its job), and removed when the shell exits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.engine.client import bind_mount, container_config, device_request, host_config
from emulator.engine.docker import DockerEngine
from emulator.engine.errors import GONE, Kind, engine_call
from emulator.engine.labels import (
    LABEL_HOST,
    LABEL_JOB,
    LABEL_KEPT,
    LABEL_SHELL,
    job_labels,
    listed_name,
    owner_pid,
)

RUNNING = ("running", "paused", "restarting")
# Bash when the image has it, else sh; -c keeps stdin for the shell itself.
SHELL_COMMAND = ["/bin/sh", "-c", "command -v bash >/dev/null 2>&1 && exec bash; exec sh"]


@dataclass(frozen=True)
class KeptContainer:
    """One kept host container, as the engine lists it."""

    id: str
    name: str
    job: str
    host: str
    work_dir: Path  # LABEL_KEPT's value
    owner: int | None  # the pid of the emulator that ran it
    status: str  # created, exited, running, ...

    @property
    def running(self) -> bool:
        return self.status in RUNNING


def kept_containers(engine: DockerEngine, job: str | None = None) -> list[KeptContainer]:
    """Every kept container (only ``job``'s when given), in host order."""
    labels = [LABEL_KEPT] + ([f"{LABEL_JOB}={job}"] if job is not None else [])
    with engine_call("list the kept containers"):
        listed = engine.api.containers(all=True, filters={"label": labels})
    found = [_kept(info) for info in listed]
    return sorted(found, key=lambda c: (c.job, len(c.host), c.host, c.name))


def _kept(info: Mapping[str, Any]) -> KeptContainer:
    labels = info.get("Labels") or {}
    return KeptContainer(
        id=str(info["Id"]),
        name=listed_name(info),
        job=labels.get(LABEL_JOB, ""),
        host=labels.get(LABEL_HOST, ""),
        work_dir=Path(labels.get(LABEL_KEPT, "")),
        owner=owner_pid(labels),
        status=str(info.get("State") or ""),
    )


def remove_kept_container(engine: DockerEngine, kept: KeptContainer) -> bool:
    """Remove a kept container; whether this call removed it (not when it was gone)."""
    with engine_call(
        f"remove the kept container {kept.name}", tolerate=GONE | {Kind.CONFLICT}
    ) as call:
        engine.api.remove_container(kept.id, force=True, v=True)
    return call.failure is None


def open_shells(engine: DockerEngine, job: str) -> list[tuple[str, int | None]]:
    """(name, owner pid) of the post-mortem shell containers of ``job`` that exist."""
    labels = [LABEL_SHELL, f"{LABEL_JOB}={job}"]
    with engine_call("list the shell containers"):
        listed = engine.api.containers(all=True, filters={"label": labels})
    return [(listed_name(info), owner_pid(info.get("Labels") or {})) for info in listed]


@dataclass(frozen=True)
class HostSetup:
    """What a kept container ran with, read back from the engine."""

    image: str
    environment: list[str]  # NAME=VALUE, Config.Env: the image's and the job's
    user: str
    working_dir: str
    mounts: list[tuple[str, Path, bool]]  # (target, source, read-only), HostConfig.Mounts
    nano_cpus: int | None
    memory_bytes: int | None
    device_requests: list[dict[str, Any]]  # GPUs


def host_setup(engine: DockerEngine, kept: KeptContainer) -> HostSetup:
    """How ``kept``'s container was made (docker inspect)."""
    with engine_call(f"inspect the kept container {kept.name}"):
        attrs = engine.api.inspect_container(kept.id)
    config = attrs.get("Config") or {}
    host = attrs.get("HostConfig") or {}
    mounts = [
        (str(m["Target"]), Path(m["Source"]), bool(m.get("ReadOnly")))
        for m in host.get("Mounts") or []
        if m.get("Type", "bind") == "bind"
    ]
    return HostSetup(
        image=str(config.get("Image") or attrs.get("Image")),
        environment=list(config.get("Env") or []),
        user=str(config.get("User") or ""),
        working_dir=str(config.get("WorkingDir") or ""),
        mounts=mounts,
        nano_cpus=host.get("NanoCpus") or None,
        memory_bytes=host.get("Memory") or None,
        device_requests=list(host.get("DeviceRequests") or []),
    )


def create_shell(
    engine: DockerEngine,
    kept: KeptContainer,
    setup: HostSetup,
    mounts: list[tuple[str, Path, bool]],
    *,
    isolated: bool,
    tty: bool,
) -> str:
    """Create (not start) a shell container for ``kept``'s host: its image, environment,
    user, working dir, limits and GPUs, the ``mounts`` given, hostname the host's, no network
    when the job had network isolation (else the default bridge). Returns its id."""
    host = host_config(
        mounts=[bind_mount(target, str(source), read_only) for target, source, read_only in mounts],
        network_mode="none" if isolated else "bridge",
        nano_cpus=setup.nano_cpus,
        memory_bytes=setup.memory_bytes,
        device_requests=[_device_request(r) for r in setup.device_requests],
    )
    labels = {**job_labels(kept.job), LABEL_HOST: kept.host, LABEL_SHELL: "1"}
    with engine_call(f"create a shell container for {kept.host}"):
        config = container_config(
            setup.image,
            host,
            entrypoint=SHELL_COMMAND,
            command=[],
            environment=setup.environment,
            user=setup.user or None,
            working_dir=setup.working_dir or None,
            hostname=kept.host,
            labels=labels,
            stdin_open=True,
            tty=tty,
        )
        created = engine.api.create_container(
            config, name=f"{kept.name}-shell-{os.urandom(3).hex()}"
        )
    return str(created["Id"])


def _device_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """A device request (GPUs) as the engine described it, asked for again."""
    return device_request(
        int(request.get("Count") or 0),
        [[str(c) for c in cs] for cs in request.get("Capabilities") or []],
        driver=str(request.get("Driver") or ""),
        device_ids=[str(i) for i in request.get("DeviceIDs") or []],
        options={str(k): str(v) for k, v in (request.get("Options") or {}).items()},
    )


def remove_shell(engine: DockerEngine, container_id: str) -> None:
    """Remove a shell container (gone already is fine)."""
    with engine_call("remove the shell container", tolerate=GONE | {Kind.CONFLICT}):
        engine.api.remove_container(container_id, force=True, v=True)
