"""Everything the emulator asks of Docker, through docker-py (the only module importing it).

Docker errors are translated here, once, into the emulator's own: ``EnvironmentProblem`` for
what the user must fix (no engine, missing image, no GPUs, an engine that stops answering),
``StartFailed`` for a container that could not start (the job then fails, as SageMaker's would).
No docker-py or requests exception leaves this module. A job container removed from outside the
emulator (``docker rm -f``) while the job runs counts as a host that exited with code 137 (what
the engine reports for a SIGKILL, which is how ``docker rm -f`` ends it), with
``Exit.removed`` set (or, when its kill was seen before the removal, ``removed_from_outside``
says so): the job fails with the reason "the container of algo-N was removed from
outside the emulator" (see ``job.py``). Every container and network carries
the label ``sagemaker-emulator.run.job=<job>`` (and the emulator's pid) so that ``prune`` finds
leftovers even after a crash.

Root-owned leftovers: ``remove_as_root`` deletes what a root training container wrote into a
work dir through a short-lived root container of the job's own image (always local), for an
emulator run by a non-root user of the Docker group.

Name resolution between hosts: Docker's embedded DNS only answers for containers that are
running, so a host starting before its peers could not resolve them. Each job network is created
with a subnet chosen here (a free /24 of 172.16.0.0/12 by default: not used by a Docker network
nor by a route of this machine; another choice is made when the engine reports an overlap),
every host gets a fixed address in it (algo-1 = .2, algo-2 = .3, ...) and every container's
/etc/hosts lists every host from the first instant (``extra_hosts``).

Security defaults: containers are never privileged, join no host namespace (network, PID, IPC,
UTS, user) and get no added capabilities. Under EnableNetworkIsolation the job network is
``internal`` (the engine forwards nothing in or out of it) AND its bridge gets no address on
the host (``inhibit_ipv4``): ``internal`` alone still lets containers reach every address of
the host itself through the bridge's gateway address (Docker 20.10). The hosts of the job
reach each other on the bridge as before.

GPUs: a host's GPUs are asked for with a Docker device request (driver capability ``gpu``).
The engine can honour that when it lists an ``nvidia`` runtime (``docker info``), or, for an
engine on this machine, when /dev/nvidiactl exists and the NVIDIA container toolkit's
``nvidia-container-runtime-hook`` is on PATH: dockerd registers its GPU device driver exactly
when it finds that hook. ``gpu_support`` applies this rule.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import random
import re
import shutil
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import docker.utils.socket
import requests.exceptions

from emulator.errors import EnvironmentProblem

LABEL_JOB = "sagemaker-emulator.run.job"
LABEL_HOST = "sagemaker-emulator.host"
LABEL_PID = "sagemaker-emulator.pid"
EXIT_NOT_FOUND = 127  # what `docker run` reports when the command cannot be found
EXIT_NOT_EXECUTABLE = 126
SUBNET_POOL = ipaddress.IPv4Network("172.16.0.0/12")
DEFAULT_BRIDGE = ipaddress.IPv4Network("172.17.0.0/16")  # docker0's usual subnet
NETWORK_ATTEMPTS = 20
NVIDIA_HOOK = "nvidia-container-runtime-hook"
NETWORK_REMOVAL_SECONDS = 15.0
INHIBIT_IPV4 = "com.docker.network.bridge.inhibit_ipv4"  # no address for the bridge on the host
EXIT_REMOVED = 137  # a container removed from outside (docker rm -f kills it: 128 + SIGKILL)
REMOVAL_SECONDS = 1.0  # how long a host killed from outside is watched for its removal
LABEL_CLEANUP = "sagemaker-emulator.cleanup"  # marks the root container removing a work dir
CLEANUP_TARGET = "/sagemaker-emulator-cleanup"  # where that container sees the work dir
CLEANUP_SECONDS = 300

_EXEC_ERROR = re.compile(r'(exec: "[^"]*": [^:]+?)(?:: unknown)?$')

# What a docker-py call can raise: the engine's answers (APIError is a requests HTTPError) and
# transport failures (engine gone, socket closed, timeout).
_DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


@contextmanager
def _engine_call(what: str) -> Iterator[None]:
    """Translate a failing Docker call into EnvironmentProblem naming ``what`` was asked."""
    try:
        yield
    except _DOCKER_ERRORS as exc:
        detail = getattr(exc, "explanation", None) or exc
        raise EnvironmentProblem(
            f"The Docker engine failed to {what}: {detail}; check that it is running "
            "(`docker info`)"
        ) from exc


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
class JobNetwork:
    """A job's private network: its name and the subnet every host has a fixed address in."""

    name: str
    subnet: ipaddress.IPv4Network
    internal: bool = False

    def address(self, index: int) -> str:
        """The address of host number ``index`` (0-based): .2, .3, ... (.1 is the gateway)."""
        return str(self.subnet.network_address + 2 + index)

    def hosts_file(self, hosts: list[str]) -> dict[str, str]:
        """Host name -> address of every host, in host order (for /etc/hosts)."""
        return {host: self.address(index) for index, host in enumerate(hosts)}


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
    address: str | None = None  # fixed IPv4 address on the job network
    hosts_file: dict[str, str] = field(default_factory=dict)  # name -> address, /etc/hosts
    nano_cpus: int | None = None  # CPU limit in 1e-9 CPUs
    memory_bytes: int | None = None  # memory limit


@dataclass(frozen=True)
class Exit:
    """How a container's process ended: its exit code and when (seconds since the epoch)."""

    code: int
    finished_at: float
    removed: bool = False  # the container vanished: removed from outside the emulator


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
        """Close the socket, waking a reader blocked on it (from any thread)."""
        # Over a unix socket docker-py hands out a SocketIO wrapper whose close() leaves the
        # real socket open; close both (and the HTTP response, where one is attached). A
        # shutdown first: close() alone does not wake a recv() blocked in another thread.
        parts = [p for p in (self._sock, getattr(self._sock, "_sock", None)) if p is not None]
        for part in parts:
            if hasattr(part, "shutdown"):
                with contextlib.suppress(OSError, ValueError):
                    part.shutdown(socket.SHUT_RDWR)
        for part in parts:
            with contextlib.suppress(OSError, ValueError):
                part.close()


class Container:
    """One host's container: output, start, wait, signals, removal."""

    def __init__(self, engine: DockerEngine, handle: Any, host: str) -> None:
        self._engine = engine
        self._handle = handle
        self.host = host
        self.id: str = handle.id
        self._streams: list[OutputStream] = []

    def attach(self) -> OutputStream:
        """The container's output from its start to its exit. Call before ``start``.

        The stream ends when the container exits, or at the latest when it is removed (the
        engine never ends the stream of a container removed without having started)."""
        params = {"stdout": 1, "stderr": 1, "stream": 1, "logs": 1}
        with _engine_call(f"attach to the container of {self.host}"):
            stream = OutputStream(self._engine.api.attach_socket(self.id, params=params))
        self._streams.append(stream)
        return stream

    def start(self) -> None:
        """Start the process; StartFailed when it cannot run, EnvironmentProblem when the
        engine lacks what the container asks for (a GPU driver)."""
        try:
            self._handle.start()
        except docker.errors.NotFound as exc:
            raise StartFailed(self.removed_reason(), EXIT_REMOVED) from exc
        except docker.errors.APIError as exc:
            message = str(exc.explanation or exc)
            if "could not select device driver" in message:
                raise EnvironmentProblem(
                    f"The Docker engine cannot give {self.host} its GPUs ({message}): install "
                    "the NVIDIA container toolkit for the engine, or run with --gpus 0"
                ) from exc
            with _engine_call(f"inspect the container of {self.host}"):
                state = self._engine.api.inspect_container(self.id)["State"]
            raise _start_failure(exc, state.get("ExitCode")) from exc
        except _DOCKER_ERRORS as exc:
            raise EnvironmentProblem(
                f"The Docker engine failed to start the container of {self.host}: {exc}"
            ) from exc

    def removed_reason(self) -> str:
        return f"the container of {self.host} was removed from outside the emulator"

    def exited(self) -> Exit | None:
        """How the process ended once it has (or could not start), else None; a container
        removed from outside counts as exited with EXIT_REMOVED (see the module doc)."""
        try:
            with _engine_call(f"inspect the container of {self.host}"):
                state = self._engine.api.inspect_container(self.id)["State"]
        except EnvironmentProblem as problem:
            if isinstance(problem.__cause__, docker.errors.NotFound):
                return Exit(EXIT_REMOVED, time.time(), removed=True)
            raise
        if state.get("Running") or state.get("Status") in ("running", "paused", "restarting"):
            return None
        if state.get("Status") == "created" and not state.get("Error"):
            return None  # not started yet
        return Exit(int(state.get("ExitCode", -1)), _timestamp(state.get("FinishedAt")))

    def removed_from_outside(self, within: float = REMOVAL_SECONDS) -> bool:
        """Whether the container is gone or being removed, waiting up to ``within`` seconds:
        ``docker rm -f`` first kills the process (the exit, 137, is seen at once) and only
        then marks the container for removal."""
        deadline = time.monotonic() + within
        while True:
            try:
                with _engine_call(f"inspect the container of {self.host}"):
                    state = self._engine.api.inspect_container(self.id)["State"]
            except EnvironmentProblem as problem:
                if isinstance(problem.__cause__, docker.errors.NotFound):
                    return True
                raise
            if state.get("Status") == "removing":
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def exit_code(self) -> int | None:
        """The exit code once the process has ended (or never started), else None."""
        exited = self.exited()
        return None if exited is None else exited.code

    def inspect(self) -> dict[str, Any]:
        """The engine's full description of the container (docker inspect)."""
        with _engine_call(f"inspect the container of {self.host}"):
            return dict(self._engine.api.inspect_container(self.id))

    def signal(self, signal_name: str) -> None:
        """Send a signal if still running (a container that already exited, or was removed,
        is fine)."""
        with _engine_call(f"send {signal_name} to the container of {self.host}"):
            try:
                self._handle.kill(signal=signal_name)
            except docker.errors.APIError as exc:
                if exc.status_code not in (404, 409):
                    raise

    def remove(self) -> None:
        """Remove the container (killed if running) and end its output streams. Idempotent."""
        try:
            with _engine_call(f"remove the container of {self.host}"):
                try:
                    self._handle.remove(force=True, v=True)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:  # a removal (prune's, say) is already under way
                        raise
        finally:
            for stream in self._streams:
                stream.close()


def _timestamp(text: Any) -> float:
    """Seconds since the epoch of an engine time (RFC 3339, nanoseconds); unknown -> +inf."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return math.inf
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        return math.inf
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + float(f"0.{fraction or 0}")


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
        except _DOCKER_ERRORS as exc:
            raise EnvironmentProblem(f"Image {image!r} cannot be inspected: {exc}") from exc

    def gpu_support(self) -> bool:
        """Whether the engine can give containers GPUs (the rule is in the module doc)."""
        try:
            runtimes = self.client.info().get("Runtimes") or {}
        except _DOCKER_ERRORS as exc:
            raise EnvironmentProblem(f"The Docker engine cannot be queried: {exc}") from exc
        if "nvidia" in runtimes:
            return True
        return (
            _local_engine()
            and Path("/dev/nvidiactl").exists()
            and shutil.which(NVIDIA_HOOK) is not None
        )

    def cpu_count(self) -> int:
        """CPUs of the engine's machine (the most a container may be given)."""
        with _engine_call("describe itself (docker info)"):
            info = self.client.info()
        return int(info.get("NCPU") or os.cpu_count() or 1)

    def create_network(self, name: str, job: str, *, internal: bool, hosts: int) -> JobNetwork:
        """A private bridge network with room for ``hosts`` fixed addresses (see module doc)."""
        prefix = subnet_prefix(hosts)
        chooser = random.Random()
        for _ in range(NETWORK_ATTEMPTS):
            with _engine_call("list its networks"):
                in_use = self._subnets_in_use()
            subnet = free_subnet(prefix, in_use, chooser)
            pool = docker.types.IPAMPool(
                subnet=str(subnet), gateway=str(subnet.network_address + 1)
            )
            try:
                self.client.networks.create(
                    name,
                    driver="bridge",
                    internal=internal,
                    labels=job_labels(job),
                    ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                    options={INHIBIT_IPV4: "true"} if internal else None,
                    check_duplicate=True,
                )
            except docker.errors.APIError as exc:
                if "overlap" in str(exc).lower():
                    continue  # taken meanwhile (another job): choose again
                raise EnvironmentProblem(f"Cannot create the job network {name}: {exc}") from exc
            except _DOCKER_ERRORS as exc:
                raise EnvironmentProblem(f"Cannot create the job network {name}: {exc}") from exc
            return JobNetwork(name, subnet, internal)
        raise EnvironmentProblem(
            f"No free /{prefix} subnet for the job network in {SUBNET_POOL} after "
            f"{NETWORK_ATTEMPTS} attempts; remove unused Docker networks (`docker network prune`)"
        )

    def _subnets_in_use(self) -> list[ipaddress.IPv4Network]:
        used = list(host_routes())
        for network in self.client.networks.list():
            for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
                with contextlib.suppress(ValueError, TypeError):
                    subnet = ipaddress.ip_network(config.get("Subnet"), strict=False)
                    if isinstance(subnet, ipaddress.IPv4Network):
                        used.append(subnet)
        return used

    def remove_network(self, name: str) -> None:
        """Remove a job network; one already gone is fine."""
        with (
            _engine_call(f"remove the network {name}"),
            contextlib.suppress(docker.errors.NotFound),
        ):
            self.api.remove_network(name)

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
        with _engine_call(f"create the container of {plan.host}"):
            return self._create_container(plan, name, mounts, device_requests, labels)

    def _create_container(
        self,
        plan: ContainerPlan,
        name: str,
        mounts: list[docker.types.Mount],
        device_requests: list[docker.types.DeviceRequest],
        labels: dict[str, str],
    ) -> Container:
        endpoint = self.api.create_endpoint_config(aliases=[plan.host], ipv4_address=plan.address)
        networking = self.api.create_networking_config(
            # types-docker annotates one EndpointConfig; the Engine API takes a dict by network.
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
        except docker.errors.APIError as exc:
            raise EnvironmentProblem(
                f"The Docker engine cannot create the container of {plan.host}: "
                f"{exc.explanation or exc}"
            ) from exc
        return Container(self, self.client.containers.get(created["Id"]), plan.host)

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
            except _DOCKER_ERRORS:
                return False
            if code == 0:
                return True
        return False

    def _run_as_root(
        self, image: str, entrypoint: list[str], host_config: dict[str, Any], job: str
    ) -> int | None:
        """Run ``entrypoint`` as root in a new container; its exit code, None when it could
        not start (no such executable)."""
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
            try:
                self.api.start(created["Id"])
            except docker.errors.APIError:
                return None  # "exec: ...: executable file not found": the next candidate
            result = self.api.wait(created["Id"], timeout=CLEANUP_SECONDS)
            code = int(result.get("StatusCode", -1))
            return None if code in (EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE) else code
        finally:
            with contextlib.suppress(*_DOCKER_ERRORS):
                self.api.remove_container(created["Id"], force=True, v=True)

    def remove_orphans(self, owner_alive: Callable[[int], bool]) -> list[str]:
        """Remove the containers and networks of emulator processes that are gone.

        Each carries the pid of the emulator that made it; another live emulator's resources
        (whatever its state dir) are left alone. Another prune running at the same time is
        fine: what it is already removing is skipped. Returns what was removed."""

        def orphaned(labels: Any) -> bool:
            pid = labels.get(LABEL_PID, "")
            return not (pid.isdigit() and owner_alive(int(pid)))

        # The low-level listings: the high-level ones inspect each item, which fails when
        # another prune removes it in between.
        filters: dict[str, Any] = {"label": LABEL_JOB}
        removed = [
            f"container {_name(info)}"
            for info in self.api.containers(all=True, filters=filters)
            if orphaned(info.get("Labels") or {}) and self._remove_container(info)
        ]
        removed += [
            f"network {_name(info)}"
            for info in self.api.networks(filters=filters)
            if orphaned(info.get("Labels") or {}) and self._remove_network(info)
        ]
        return removed

    def _remove_container(self, info: dict[str, Any]) -> bool:
        try:
            self.api.remove_container(info["Id"], force=True, v=True)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # "removal already in progress": another prune's
                return False
            raise EnvironmentProblem(f"Cannot remove container {_name(info)}: {exc}") from exc
        return True

    def _remove_network(self, info: dict[str, Any]) -> bool:
        """Remove a network, waiting a little for containers another prune is removing."""
        deadline = time.monotonic() + NETWORK_REMOVAL_SECONDS
        while True:
            try:
                self.api.remove_network(info["Id"])
                return True
            except docker.errors.NotFound:
                return False
            except docker.errors.APIError as exc:
                if time.monotonic() > deadline:
                    raise EnvironmentProblem(f"Cannot remove network {_name(info)}: {exc}") from exc
                time.sleep(0.2)


def _name(info: dict[str, Any]) -> str:
    """The name in a low-level container or network listing."""
    names = info.get("Names") or [info.get("Name") or info["Id"][:12]]
    return str(names[0]).lstrip("/")


def _local_engine() -> bool:
    host = os.environ.get("DOCKER_HOST", "")
    return host == "" or host.startswith("unix://")


def subnet_prefix(hosts: int) -> int:
    """The longest prefix (at most /24) with addresses for the gateway and ``hosts`` hosts."""
    needed = hosts + 3  # network, gateway, broadcast
    return min(24, 32 - math.ceil(math.log2(needed)))


def host_routes() -> Iterator[ipaddress.IPv4Network]:
    """The IPv4 destinations of this machine's routes (the default route excepted)."""
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        with contextlib.suppress(ValueError, struct.error):
            destination = socket.inet_ntoa(struct.pack("<I", int(fields[1], 16)))
            mask = socket.inet_ntoa(struct.pack("<I", int(fields[7], 16)))
            network = ipaddress.IPv4Network(f"{destination}/{mask}", strict=False)
            if network.prefixlen:
                yield network


def free_subnet(
    prefix: int, in_use: list[ipaddress.IPv4Network], chooser: random.Random
) -> ipaddress.IPv4Network:
    """A random /``prefix`` of SUBNET_POOL overlapping neither ``in_use`` nor docker0's."""
    taken = [*in_use, DEFAULT_BRIDGE]
    count = 2 ** (prefix - SUBNET_POOL.prefixlen)
    size = 2 ** (32 - prefix)
    for _ in range(1000):
        start = SUBNET_POOL.network_address + chooser.randrange(count) * size
        candidate = ipaddress.IPv4Network(f"{start}/{prefix}")
        if not any(candidate.overlaps(other) for other in taken):
            return candidate
    raise EnvironmentProblem(
        f"No free /{prefix} subnet left in {SUBNET_POOL}: remove unused Docker networks "
        "(`docker network prune`)"
    )
