"""Job networks: one private bridge per job, a fixed address per host, every host in /etc/hosts.

Docker's embedded DNS only answers for containers that are running, so a host starting before
its peers could not resolve them. Each job network is created with a subnet chosen here (a free
/24 of 172.16.0.0/12 by default: not used by a Docker network nor by a route of this machine;
another choice is made when the engine reports an overlap), every host gets a fixed address in
it (algo-1 = .2, algo-2 = .3, ...) and every container's /etc/hosts lists every host from the
first instant (``extra_hosts``, see ``ContainerPlan.hosts_file``).

Under EnableNetworkIsolation the job network is ``internal`` (the engine forwards nothing in or
out of it) AND its bridge gets no address on the host (``inhibit_ipv4``): ``internal`` alone
still lets containers reach every address of the host itself through the bridge's gateway
address (Docker 20.10). The hosts of the job reach each other on the bridge as before.

A single-host job without network isolation needs no network of its own: it joins the engine's
default bridge, as ``docker run`` does (``default_bridge``). There is no peer to resolve, and the
engine lists the container's own name and address in its /etc/hosts, so ``algo-1`` resolves;
creating and removing a network costs more than the rest of a trivial job's engine calls
together (a quarter of a second or more). An engine without a default bridge (``dockerd -b
none``) gets a job network, as a multi-host job does.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import random
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from emulator.engine.client import EngineClient
from emulator.engine.errors import GONE, Kind, engine_call
from emulator.engine.labels import job_labels
from emulator.errors import EnvironmentProblem

SUBNET_POOL = ipaddress.IPv4Network("172.16.0.0/12")
DEFAULT_BRIDGE = ipaddress.IPv4Network("172.17.0.0/16")  # docker0's usual subnet
DEFAULT_BRIDGE_NAME = "bridge"  # the engine's default network, docker0
NETWORK_ATTEMPTS = 20
INHIBIT_IPV4 = "com.docker.network.bridge.inhibit_ipv4"  # no address for the bridge on the host


@dataclass(frozen=True)
class JobNetwork:
    """A job's private network: its name and the subnet every host has a fixed address in."""

    name: str
    subnet: ipaddress.IPv4Network
    internal: bool = False
    # The engine's default bridge: not the job's (never removed), and the engine chooses the
    # address (fixed addresses and aliases are for networks a user created).
    shared: bool = False

    def address(self, index: int) -> str | None:
        """The address of host number ``index`` (0-based): .2, .3, ... (.1 is the gateway);
        None on the default bridge, where the engine assigns it."""
        if self.shared:
            return None
        return str(self.subnet.network_address + 2 + index)

    def hosts_file(self, hosts: list[str]) -> dict[str, str]:
        """Host name -> address of every host, in host order (for /etc/hosts); on the default
        bridge the engine writes the one host's own entry itself."""
        if self.shared:
            return {}
        return {host: str(self.address(index)) for index, host in enumerate(hosts)}


def default_bridge(api: EngineClient) -> JobNetwork | None:
    """The engine's default bridge network (``docker run``'s), None when it has none."""
    with engine_call("describe its default bridge network", tolerate={Kind.NOT_FOUND}) as call:
        network = api.inspect_network(DEFAULT_BRIDGE_NAME)
    if call.failure is not None or network.get("Driver") != "bridge":
        return None
    subnet = DEFAULT_BRIDGE
    for config in (network.get("IPAM") or {}).get("Config") or []:
        with contextlib.suppress(ValueError, TypeError):
            candidate = ipaddress.ip_network(str(config.get("Subnet")), strict=False)
            if isinstance(candidate, ipaddress.IPv4Network):
                subnet = candidate
                break
    return JobNetwork(DEFAULT_BRIDGE_NAME, subnet, shared=True)


def create_network(
    api: EngineClient, name: str, job: str, *, internal: bool, hosts: int
) -> JobNetwork:
    """A private bridge network with room for ``hosts`` fixed addresses (see module doc)."""
    prefix = subnet_prefix(hosts)
    chooser = random.Random()
    for _ in range(NETWORK_ATTEMPTS):
        subnet = free_subnet(prefix, _subnets_in_use(api), chooser)
        pool = {"Subnet": str(subnet), "Gateway": str(subnet.network_address + 1)}
        body = {
            "Name": name,
            "Driver": "bridge",
            "Internal": internal,
            "Labels": job_labels(job),
            "IPAM": {"Driver": "default", "Config": [pool]},
            "Options": {INHIBIT_IPV4: "true"} if internal else {},
            "CheckDuplicate": True,
        }
        with engine_call(
            f"create the job network {name}",
            tolerate={Kind.SUBNET_TAKEN},
            wording=lambda failure: f"Cannot create the job network {name}: {failure.error}",
        ) as call:
            api.create_network(body)
        if call.failure is None:
            return JobNetwork(name, subnet, internal)
        # else the subnet was taken meanwhile (another job): choose again
    raise EnvironmentProblem(
        f"No free /{prefix} subnet for the job network in {SUBNET_POOL} after "
        f"{NETWORK_ATTEMPTS} attempts; remove unused Docker networks (`docker network prune`)"
    )


def remove_network(api: EngineClient, name: str) -> None:
    """Remove a job network; one already gone is fine."""
    with engine_call(f"remove the network {name}", tolerate=GONE):
        api.remove_network(name)


def _subnets_in_use(api: EngineClient) -> list[ipaddress.IPv4Network]:
    used = list(host_routes())
    with engine_call("list its networks"):
        networks = api.networks()
    for network in networks:
        for config in (network.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(ValueError, TypeError):
                subnet = ipaddress.ip_network(config.get("Subnet"), strict=False)
                if isinstance(subnet, ipaddress.IPv4Network):
                    used.append(subnet)
    return used


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
