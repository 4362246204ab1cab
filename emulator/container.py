"""Everything the emulator asks of Docker, through docker-py (the only module importing it).

Docker errors are translated here, once, into the emulator's own: ``EnvironmentProblem`` for
what the user must fix (no engine, missing image), ``StartFailed`` for a container that could
not start (the job then fails, as SageMaker's would). Every container and network carries the
label ``sagemaker-emulator.job=<job>`` so that ``prune`` finds leftovers even after a crash.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import docker.utils.socket

from emulator.errors import EnvironmentProblem

LABEL_JOB = "sagemaker-emulator.job"
LABEL_HOST = "sagemaker-emulator.host"
LABEL_PID = "sagemaker-emulator.pid"
EXIT_NOT_FOUND = 127  # what `docker run` reports when the command cannot be found
EXIT_NOT_EXECUTABLE = 126

_EXEC_ERROR = re.compile(r'(exec: "[^"]*": [^:]+?)(?:: unknown)?$')


class StartFailed(Exception):
    """The container exists but its process could not start (bad entrypoint, ...)."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


@dataclass(frozen=True)
class Mount:
    target: str  # path inside the container
    source: Path  # path on the host
    read_only: bool = False


@dataclass(frozen=True)
class ContainerPlan:
    """What one host's container is: the job's image, command and mounts for that host."""

    job: str
    host: str
    image: str
    network: str
    entrypoint: list[str] | None
    command: list[str] | None
    environment: dict[str, str]
    mounts: list[Mount]
    gpus: int = 0  # -1 for all
    labels: dict[str, str] = field(default_factory=dict)


def job_labels(job: str) -> dict[str, str]:
    return {LABEL_JOB: job, LABEL_PID: str(os.getpid())}


class OutputStream:
    """Frames of a container's attached output as (stream, chunk), stream 1 = stdout and
    2 = stderr; the socket is ours to close, which ``close`` does."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for stream, chunk in docker.utils.socket.frames_iter(  # type: ignore[no-untyped-call]
            self._sock, tty=False
        ):
            yield int(stream), bytes(chunk)

    def close(self) -> None:
        # Over a unix socket docker-py hands out a SocketIO wrapper whose close() leaves the
        # real socket open; close both (and the HTTP response, where one is attached).
        for part in (self._sock, getattr(self._sock, "_sock", None)):
            if part is not None:
                with contextlib.suppress(OSError, ValueError):
                    part.close()


class Container:
    """One host's container: output, start, wait, signals, removal."""

    def __init__(self, engine: DockerEngine, handle: Any, host: str) -> None:
        self._engine = engine
        self._handle = handle
        self.host = host
        self.id: str = handle.id

    def attach(self) -> OutputStream:
        """The container's output from its start to its exit. Call before ``start``."""
        params = {"stdout": 1, "stderr": 1, "stream": 1, "logs": 1}
        return OutputStream(self._engine.api.attach_socket(self.id, params=params))

    def start(self) -> None:
        try:
            self._handle.start()
        except docker.errors.APIError as exc:
            state = self._engine.api.inspect_container(self.id)["State"]
            raise _start_failure(exc, state.get("ExitCode")) from exc

    def exit_code(self) -> int | None:
        """The exit code once the process has ended (or never started), else None."""
        state = self._engine.api.inspect_container(self.id)["State"]
        if state.get("Running") or state.get("Status") in ("running", "paused", "restarting"):
            return None
        if state.get("Status") == "created" and not state.get("Error"):
            return None  # not started yet
        return int(state.get("ExitCode", -1))

    def signal(self, signal_name: str) -> None:
        """Send a signal if still running (a container that already exited is fine)."""
        try:
            self._handle.kill(signal=signal_name)
        except docker.errors.APIError as exc:
            if exc.status_code not in (404, 409):
                raise

    def remove(self) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self._handle.remove(force=True, v=True)


def _start_failure(exc: docker.errors.APIError, exit_code: int | None) -> StartFailed:
    message = str(exc.explanation or exc)
    match = _EXEC_ERROR.search(message.strip())
    reason = match.group(1) if match else message
    if not exit_code:  # the engine records 126/127 as `docker run` would; older ones may not
        exit_code = EXIT_NOT_EXECUTABLE if "permission denied" in reason else EXIT_NOT_FOUND
    return StartFailed(reason, exit_code)


class DockerEngine:
    """The local Docker engine; fails fast with a clear message when none answers."""

    def __init__(self) -> None:
        try:
            self.client = docker.from_env(timeout=120)
            self.client.ping()
        except docker.errors.DockerException as exc:
            where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            raise EnvironmentProblem(
                f"No Docker engine answers at {where}: start one (`make engine` as root, or "
                "`sudo systemctl start docker`) or point DOCKER_HOST at it"
            ) from exc
        self.api = self.client.api

    def close(self) -> None:
        """Close the engine connections (attach streams included)."""
        self.client.close()

    def require_image(self, image: str) -> None:
        """The image must already be local: the emulator never pulls."""
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise EnvironmentProblem(
                f"Image {image!r} is not present on the local Docker engine, and the emulator "
                f"never pulls. Build it (`docker build -t {image} .`), load it "
                f"(`docker load -i image.tar`), or pull it yourself first"
            ) from exc
        except docker.errors.APIError as exc:
            raise EnvironmentProblem(f"Image {image!r} cannot be inspected: {exc}") from exc

    def create_network(self, name: str, job: str, *, internal: bool) -> str:
        self.client.networks.create(
            name, driver="bridge", internal=internal, labels=job_labels(job), check_duplicate=True
        )
        return name

    def remove_network(self, name: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.networks.get(name).remove()

    def create_container(self, plan: ContainerPlan, name: str) -> Container:
        mounts = [
            docker.types.Mount(m.target, str(m.source), type="bind", read_only=m.read_only)
            for m in plan.mounts
        ]
        device_requests = []
        if plan.gpus:
            device_requests.append(
                docker.types.DeviceRequest(count=plan.gpus, capabilities=[["gpu"]])
            )
        labels = {**job_labels(plan.job), LABEL_HOST: plan.host, **plan.labels}
        networking = self.api.create_networking_config(
            # types-docker annotates one EndpointConfig; the Engine API takes a dict by network.
            {plan.network: self.api.create_endpoint_config(aliases=[plan.host])}  # type: ignore[arg-type]
        )
        host_config = self.api.create_host_config(
            mounts=mounts, device_requests=device_requests or None, network_mode=plan.network
        )
        try:
            created = self.api.create_container(
                plan.image,
                command=plan.command,
                entrypoint=plan.entrypoint,
                environment=plan.environment,
                hostname=plan.host,
                labels=labels,
                name=name,
                host_config=host_config,
                networking_config=networking,
            )
        except docker.errors.ImageNotFound as exc:
            raise EnvironmentProblem(f"Image {plan.image!r} disappeared: {exc}") from exc
        return Container(self, self.client.containers.get(created["Id"]), plan.host)

    def remove_orphans(self, owner_alive: Callable[[int], bool]) -> list[str]:
        """Remove the containers and networks of emulator processes that are gone.

        Each carries the pid of the emulator that made it; another live emulator's resources
        (whatever its state dir) are left alone. Returns what was removed."""
        removed = []

        def orphaned(labels: Any) -> bool:
            pid = labels.get(LABEL_PID, "")
            return not (pid.isdigit() and owner_alive(int(pid)))

        filters: dict[str, Any] = {"label": LABEL_JOB}
        for container in self.client.containers.list(all=True, filters=filters):
            if orphaned(container.labels):
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True, v=True)
                    removed.append(f"container {container.name}")
        for network in self.client.networks.list(filters=filters):
            if orphaned(network.attrs.get("Labels") or {}):
                with contextlib.suppress(docker.errors.NotFound):
                    network.remove()
                    removed.append(f"network {network.name}")
        return removed
