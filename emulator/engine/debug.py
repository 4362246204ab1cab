"""What debugging a running job asks of the engine: published ports, the image's command, a
running job's containers (``emulator exec``).

Ports are published on 127.0.0.1 only: a debugger or a profiler port open on every interface
would hand the container to the whole network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emulator.engine.client import LOOPBACK
from emulator.engine.container import Container
from emulator.engine.errors import Failure, Kind, engine_call, missing_image
from emulator.engine.labels import LABEL_HOST, LABEL_JOB, LABEL_PID, listed_name

if TYPE_CHECKING:  # docker.py imports this module
    from emulator.engine.docker import DockerEngine

RUNNING = ("running", "paused", "restarting")


@dataclass(frozen=True)
class PublishedPort:
    """A container port as the engine published it."""

    host: str  # the job's host, algo-1
    container_port: int
    address: str  # where on this machine: 127.0.0.1
    host_port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.container_port} -> {self.address}:{self.host_port}"


def published(container: Container) -> list[PublishedPort]:
    """The ports the engine published for ``container`` (once started), by container port."""
    settings = container.inspect().get("NetworkSettings") or {}
    found = []
    for key, bindings in (settings.get("Ports") or {}).items():
        port, _, protocol = str(key).partition("/")
        for binding in bindings or []:
            if protocol in ("", "tcp") and str(binding.get("HostPort", "")).isdigit():
                address = str(binding.get("HostIp") or LOOPBACK)
                found.append(
                    PublishedPort(container.host, int(port), address, int(binding["HostPort"]))
                )
    return sorted(found, key=lambda p: (p.container_port, p.address))


def image_command(engine: DockerEngine, image: str) -> tuple[list[str], list[str]]:
    """The image's ENTRYPOINT and CMD (empty lists when it has none)."""

    def wording(failure: Failure) -> str:
        if failure.kind is Kind.IMAGE_MISSING:
            return missing_image(image)
        return f"Image {image!r} cannot be inspected: {failure.error}"

    with engine_call(f"inspect the image {image}", wording=wording):
        config = engine.api.inspect_image(image).get("Config") or {}
    return list(config.get("Entrypoint") or []), list(config.get("Cmd") or [])


@dataclass(frozen=True)
class HostContainer:
    """A job's host container as the engine lists it."""

    id: str
    name: str
    host: str
    status: str  # created, running, exited, ...

    @property
    def running(self) -> bool:
        return self.status in RUNNING


def job_containers(engine: DockerEngine, job: str, owner: int) -> list[HostContainer]:
    """The host containers of ``job`` made by the emulator process ``owner``, in host order
    (a job of an earlier run of the same name, kept or not, is another owner's)."""
    labels = [f"{LABEL_JOB}={job}", f"{LABEL_PID}={owner}", LABEL_HOST]
    with engine_call("list the job's containers"):
        listed = engine.api.containers(all=True, filters={"label": labels})
    found = [_host_container(info) for info in listed]
    return sorted(found, key=lambda c: (len(c.host), c.host, c.name))


def _host_container(info: Mapping[str, Any]) -> HostContainer:
    labels = info.get("Labels") or {}
    return HostContainer(
        id=str(info["Id"]),
        name=listed_name(info),
        host=str(labels.get(LABEL_HOST, "")),
        status=str(info.get("State") or ""),
    )
