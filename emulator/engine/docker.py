"""The local Docker engine, through docker-py: images, GPUs, CPUs, and creating containers.

Every call goes through the translation table of ``errors.py``; the job network, the containers
and the reaper have their own modules (``network.py``, ``container.py``, ``reaper.py``).

Security defaults: containers are never privileged, join no host namespace (network, PID, IPC,
UTS, user) and get no added capabilities.

Root-owned leftovers: ``remove_as_root`` deletes what a root training container wrote into a
work dir through a short-lived root container of the job's own image (always local), for an
emulator run by a non-root user of the Docker group; ``read_tree_as_root`` reads such files
(a tar stream from the engine, ``archive.py``) so that they can be packed.

GPUs: a host's GPUs are asked for with a Docker device request (driver capability ``gpu``).
The engine can honour that when it lists an ``nvidia`` runtime (``docker info``), or, for an
engine on this machine, when /dev/nvidiactl exists and the NVIDIA container toolkit's
``nvidia-container-runtime-hook`` is on PATH: dockerd registers its GPU device driver exactly
when it finds that hook. ``gpu_support`` applies this rule.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import docker
import docker.types

from emulator.engine.archive import read_tree
from emulator.engine.container import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    Container,
    ContainerPlan,
)
from emulator.engine.debug import port_bindings
from emulator.engine.errors import (
    ANSWERED,
    EVERY_KIND,
    Failure,
    Kind,
    engine_call,
    missing_image,
    no_engine,
)
from emulator.engine.labels import LABEL_CLEANUP, host_labels, job_labels
from emulator.engine.network import (
    DEFAULT_BRIDGE_NAME,
    JobNetwork,
    create_network,
    default_bridge,
    remove_network,
)
from emulator.engine.reaper import remove_orphans
from emulator.engine.terminal import TerminalContainer
from emulator.errors import EnvironmentProblem

NVIDIA_HOOK = "nvidia-container-runtime-hook"
CLEANUP_TARGET = "/sagemaker-emulator-cleanup"  # where the root container sees the work dir
CLEANUP_SECONDS = 300
# Connections kept for reuse: a job's hosts wait for their exits at once (run/hosts.py), and a
# pool smaller than the connections in use at once discards them with a warning on stderr.
POOL_SIZE = 32
_API_VERSIONS: dict[str, str] = {}  # DOCKER_HOST -> the API version its engine speaks


class DockerEngine:
    """The local Docker engine; fails fast with a clear message when none answers."""

    def __init__(self) -> None:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if not _socket_answers(where):  # docker-py would leak the socket of its failed try
            raise EnvironmentProblem(no_engine(where))
        known = _API_VERSIONS.get(where)
        with engine_call("answer", wording=lambda _: no_engine(where)):
            # Without a version the client asks the engine for it (a slow call, 10 ms): that
            # answer is the ping. The version is asked once per engine and process.
            self.client = docker.from_env(timeout=120, max_pool_size=POOL_SIZE, version=known)
            if known is not None:
                self.client.ping()
        self.api = self.client.api
        _API_VERSIONS[where] = self.api.api_version

    def close(self) -> None:
        """Close the engine connections (attach streams included)."""
        self.client.close()

    def require_image(self, image: str) -> None:
        """The image must already be local: the emulator never pulls."""

        def wording(failure: Failure) -> str:
            if failure.kind is Kind.IMAGE_MISSING:
                return missing_image(image)
            return f"Image {image!r} cannot be inspected: {failure.error}"

        with engine_call(f"inspect the image {image}", wording=wording):
            self.client.images.get(image)

    def gpu_support(self) -> bool:
        """Whether the engine can give containers GPUs (the rule is in the module doc)."""
        with engine_call(
            "describe itself (docker info)",
            wording=lambda failure: f"The Docker engine cannot be queried: {failure.error}",
        ):
            runtimes = self.api.info().get("Runtimes") or {}
        if "nvidia" in runtimes:
            return True
        return (
            _local_engine()
            and Path("/dev/nvidiactl").exists()
            and shutil.which(NVIDIA_HOOK) is not None
        )

    def cpu_count(self) -> int:
        """CPUs of the engine's machine (the most a container may be given)."""
        with engine_call("describe itself (docker info)"):
            info = self.api.info()
        return int(info.get("NCPU") or os.cpu_count() or 1)

    def bridge_gateway(self) -> str:
        """The IPv4 gateway of the default bridge (docker0, usually 172.17.0.1): for a local
        engine an address of this machine that containers of every bridge network reach."""
        with engine_call(
            "describe its default bridge network",
            wording=lambda failure: (
                f"The Docker engine has no default bridge network ({failure.detail}): the "
                "embedded S3 store listens on its gateway address; use your own S3 instead"
            ),
        ):
            network = self.api.inspect_network("bridge")
        for config in (network.get("IPAM") or {}).get("Config") or []:
            gateway = gateway_address(config)
            if gateway is not None:
                return gateway
        raise EnvironmentProblem(
            "The Docker engine's default bridge network has no IPv4 gateway address: the "
            "embedded S3 store listens on it; use your own S3 instead"
        )

    def create_network(self, name: str, job: str, *, internal: bool, hosts: int) -> JobNetwork:
        """A private bridge network with room for ``hosts`` fixed addresses (``network.py``)."""
        return create_network(self.api, name, job, internal=internal, hosts=hosts)

    def default_bridge(self) -> JobNetwork | None:
        """The engine's default bridge (a single-host job's network), None if it has none."""
        return default_bridge(self.api)

    def remove_network(self, name: str) -> None:
        """Remove a job network; one already gone is fine."""
        remove_network(self.api, name)

    def remove_orphans(self, owner_alive: Callable[[int], bool]) -> list[str]:
        """Remove the containers and networks of emulator processes that are gone (those of
        live emulators are left alone); returns what was removed (``reaper.py``)."""
        return remove_orphans(self.api, owner_alive)

    def create_container(self, plan: ContainerPlan, name: str) -> Container:
        """Create (not start) the container of ``plan``'s host."""
        mounts = [
            docker.types.Mount(m.target, str(m.source), type="bind", read_only=m.read_only)
            for m in plan.mounts
        ]
        device_requests = []
        if plan.gpus:
            device_requests.append(
                docker.types.DeviceRequest(count=plan.gpus, capabilities=[["gpu"]])
            )
        networking = None
        if plan.network != DEFAULT_BRIDGE_NAME:  # aliases and fixed addresses: job networks
            endpoint = self.api.create_endpoint_config(
                aliases=[plan.host], ipv4_address=plan.address
            )
            networking = self.api.create_networking_config(
                # types-docker annotates one EndpointConfig; the Engine API takes a dict by
                # network.
                {plan.network: endpoint}  # type: ignore[arg-type]
            )
        host_config = self.api.create_host_config(
            mounts=mounts,
            device_requests=device_requests or None,
            network_mode=plan.network,
            extra_hosts=dict(plan.hosts_file) or None,
            privileged=False,
            nano_cpus=plan.nano_cpus,
            mem_limit=plan.memory_bytes,
            port_bindings=port_bindings(plan.ports),
        )

        def wording(failure: Failure) -> str | None:
            if failure.kind is Kind.IMAGE_MISSING:
                return f"Image {plan.image!r} disappeared: {failure.error}"
            if failure.kind.answered:
                return (
                    f"The Docker engine cannot create the container of {plan.host}: "
                    f"{failure.detail}"
                )
            return None

        with engine_call(f"create the container of {plan.host}", wording=wording):
            created = self.api.create_container(
                plan.image,
                command=plan.command,
                entrypoint=plan.entrypoint,
                environment=plan.environment,
                hostname=plan.host,
                labels=host_labels(plan.job, plan.host, plan.labels),
                name=name,
                host_config=host_config,
                networking_config=networking,
                ports=list(plan.ports) or None,
                stdin_open=plan.interactive,  # docker-py sets StdinOnce with it: stdin
                # ends when the docker CLI lets go of it (EOF of a piped stdin)
                tty=plan.tty,
            )
        if plan.interactive:  # --shell: started on the user's terminal (terminal.py)
            return TerminalContainer(self.api, str(created["Id"]), plan.host, tty=plan.tty)
        return Container(self.api, str(created["Id"]), plan.host)

    def wait_for_exit(self, container: Container) -> None:
        """Return once ``container``'s process has ended (or the container is gone, or the
        engine fails: the caller inspects it then). Blocks without a time limit: the
        container's removal ends the wait at the latest."""
        with engine_call(f"wait for the container of {container.host}", tolerate=EVERY_KIND):
            self.api.wait(container.id, timeout=None)

    def remove_as_root(self, image: str, host_dir: Path, job: str) -> bool:
        """Remove everything inside ``host_dir`` (a directory of this machine the caller owns)
        from a short-lived root container of ``image``: what a root training container wrote
        into its bind mounts is root-owned, and a non-root user of the Docker group cannot
        delete it. The container is labelled like the job's (``prune`` finds it after a
        crash), has no network, mounts only ``host_dir``, and is removed before this returns.
        ``rm`` is tried, then ``/bin/sh -c``, then ``busybox rm`` (an image may lack some).
        Returns whether one of them ran and succeeded; False too when the engine is not on
        this machine (its bind mounts would name another machine's paths) or fails."""
        if not _local_engine():
            return False
        try:
            paths = [f"{CLEANUP_TARGET}/{name}" for name in sorted(os.listdir(host_dir))]
        except OSError:
            return False
        if not paths:
            return True
        candidates = [
            ["rm", "-rf", "--", *paths],
            ["/bin/sh", "-c", 'exec rm -rf -- "$@"', "sh", *paths],
            ["busybox", "rm", "-rf", "--", *paths],
        ]
        mount = docker.types.Mount(CLEANUP_TARGET, str(host_dir), type="bind")
        host_config = self.api.create_host_config(
            mounts=[mount], network_mode="none", privileged=False
        )
        for entrypoint in candidates:
            try:
                code = self._run_as_root(image, entrypoint, host_config, job)
            except EnvironmentProblem:
                return False  # the engine failed: no other candidate would fare better
            if code == 0:
                return True
        return False

    def read_tree_as_root(self, image: str, host_dir: Path, job: str, into: IO[bytes]) -> bool:
        """Write a tar of ``host_dir`` (a directory of this machine) into ``into``, read by the
        engine as root through a never-started container of ``image`` labelled with ``job``
        (``archive.py``): files a root training container kept to itself are in it too.
        Returns False, writing nothing, when the engine is not on this machine (its bind
        mounts would name another machine's paths); EnvironmentProblem when it fails."""
        if not _local_engine():
            return False
        read_tree(self.api, image, host_dir, job, into)
        return True

    def _run_as_root(
        self, image: str, entrypoint: list[str], host_config: dict[str, Any], job: str
    ) -> int | None:
        """Run ``entrypoint`` as root in a new container; its exit code, None when it could
        not start (no such executable)."""
        what = "run a root container removing a work dir"
        with engine_call(what):
            created = self.api.create_container(
                image,
                entrypoint=entrypoint,
                user="0",
                working_dir="/",
                network_disabled=True,
                labels={**job_labels(job), LABEL_CLEANUP: "1"},
                host_config=host_config,
            )
        try:
            with engine_call(what, tolerate=ANSWERED) as start:
                self.api.start(created["Id"])
            if start.failure is not None:
                return None  # "exec: ...: executable file not found": the next candidate
            with engine_call(what):
                result = self.api.wait(created["Id"], timeout=CLEANUP_SECONDS)
            code = int(result.get("StatusCode", -1))
            return None if code in (EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE) else code
        finally:
            with engine_call(what, tolerate=EVERY_KIND):
                self.api.remove_container(created["Id"], force=True, v=True)


def gateway_address(config: dict[str, Any]) -> str | None:
    """The IPv4 gateway of one IPAM config: its Gateway, else the subnet's first address."""
    with contextlib.suppress(ValueError, TypeError):
        if config.get("Gateway"):
            address = ipaddress.ip_address(config["Gateway"])
            return str(address) if address.version == 4 else None
        subnet = ipaddress.ip_network(str(config.get("Subnet")), strict=False)
        return str(subnet.network_address + 1) if subnet.version == 4 else None
    return None


def _local_engine() -> bool:
    host = os.environ.get("DOCKER_HOST", "")
    return host == "" or host.startswith("unix://")


def _socket_answers(where: str) -> bool:
    """Whether a ``unix://`` engine socket is there and listened on (other schemes, and
    other failures such as a permission problem, are left to docker-py's own message)."""
    if not where.startswith("unix://"):
        return True
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(where.removeprefix("unix://"))
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    except OSError:
        return True
    finally:
        probe.close()
    return True
