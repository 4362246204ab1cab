"""The Docker engine: images, GPUs, CPUs, and creating containers.

The engine is spoken to through ``client.py`` (the standard library over a unix socket;
docker-py only for a tcp://, ssh:// or TLS DOCKER_HOST). Every call goes through the
translation table of ``errors.py``; the job network, the containers and the reaper have their
own modules (``network.py``, ``container.py``, ``reaper.py``).

Security defaults: containers are never privileged, join no host namespace (network, PID, IPC,
UTS, user) and get no added capabilities.

Root-owned leftovers: ``remove_as_root`` deletes what a root training container wrote into a
work dir through a short-lived root container of the job's own image (always local), for an
emulator run by a non-root user of the Docker group; ``read_tree_as_root`` reads such files
(a tar stream from the engine, ``archive.py``) so that they can be packed.

The terminal, reaper and archive modules are imported where they are used: a plain job needs
none of them, and each costs its start a millisecond.

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
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from emulator.engine.client import (
    EngineClient,
    bind_mount,
    connect,
    container_config,
    device_request,
    docker_host,
    endpoints,
    host_config,
    port_bindings,
)
from emulator.engine.container import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    Container,
    ContainerPlan,
)
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
from emulator.errors import EnvironmentProblem

NVIDIA_HOOK = "nvidia-container-runtime-hook"
CLEANUP_TARGET = "/sagemaker-emulator-cleanup"  # where the root container sees the work dir
CLEANUP_SECONDS = 300


class DockerEngine:
    """The local Docker engine; fails fast with a clear message when none answers."""

    def __init__(self) -> None:
        where = docker_host()
        api: EngineClient | None = None
        with engine_call("answer", wording=lambda failure: no_engine(where, failure)):
            api = connect(where)  # its ping (which says the API version) is the answer
        assert api is not None  # engine_call raised otherwise
        self.api = api

    def close(self) -> None:
        """Close the engine connections kept for reuse (streams close on their own)."""
        self.api.close()

    def require_image(self, image: str) -> None:
        """The image must already be local: the emulator never pulls."""

        def wording(failure: Failure) -> str:
            if failure.kind is Kind.IMAGE_MISSING:
                return missing_image(image)
            return f"Image {image!r} cannot be inspected: {failure.error}"

        with engine_call(f"inspect the image {image}", wording=wording):
            self.api.inspect_image(image)

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
        from emulator.engine.reaper import remove_orphans

        return remove_orphans(self.api, owner_alive)

    def create_container(self, plan: ContainerPlan, name: str) -> Container:
        """Create (not start) the container of ``plan``'s host."""
        mounts = [bind_mount(m.target, str(m.source), m.read_only) for m in plan.mounts]
        devices = [device_request(plan.gpus, [["gpu"]])] if plan.gpus else []
        networking = None
        if plan.network != DEFAULT_BRIDGE_NAME:  # aliases and fixed addresses: job networks
            networking = endpoints(plan.network, [plan.host], plan.address)
        host = host_config(
            mounts=mounts,
            device_requests=devices,
            network_mode=plan.network,
            extra_hosts=plan.hosts_file,
            nano_cpus=plan.nano_cpus,
            memory_bytes=plan.memory_bytes,
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
            config = container_config(
                plan.image,
                host,
                command=plan.command,
                entrypoint=plan.entrypoint,
                environment=plan.environment,
                hostname=plan.host,
                labels=host_labels(plan.job, plan.host, plan.labels),
                networking=networking,
                ports=list(plan.ports),
                stdin_open=plan.interactive,  # with StdinOnce: stdin ends when the docker
                # CLI lets go of it (EOF of a piped stdin)
                tty=plan.tty,
            )
            created = self.api.create_container(config, name=name)
        if plan.interactive:  # --shell: started on the user's terminal (terminal.py)
            from emulator.engine.terminal import TerminalContainer

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
        host = host_config(mounts=[bind_mount(CLEANUP_TARGET, str(host_dir))], network_mode="none")
        for entrypoint in candidates:
            try:
                code = self._run_as_root(image, entrypoint, host, job)
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
        from emulator.engine.archive import read_tree

        read_tree(self.api, image, host_dir, job, into)
        return True

    def _run_as_root(
        self, image: str, entrypoint: list[str], host_config: dict[str, Any], job: str
    ) -> int | None:
        """Run ``entrypoint`` as root in a new container; its exit code, None when it could
        not start (no such executable)."""
        what = "run a root container removing a work dir"
        with engine_call(what):
            config = container_config(
                image,
                host_config,
                entrypoint=entrypoint,
                user="0",
                working_dir="/",
                network_disabled=True,
                labels={**job_labels(job), LABEL_CLEANUP: "1"},
            )
            created = self.api.create_container(config)
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
