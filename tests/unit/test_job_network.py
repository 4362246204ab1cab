"""The job network's addressing: a subnet with room for every host, clear of the subnets in
use, and a fixed address per host listed in every container's /etc/hosts (engine/network.py)."""

from __future__ import annotations

import ipaddress
import random

import pytest

from emulator.engine import JobNetwork
from emulator.engine.network import (
    DEFAULT_BRIDGE,
    SUBNET_POOL,
    free_subnet,
    subnet_prefix,
)


@pytest.mark.parametrize(("hosts", "prefix"), [(1, 24), (3, 24), (253, 24), (254, 23), (600, 22)])
def test_the_job_subnet_has_room_for_every_host(hosts: int, prefix: int) -> None:
    assert subnet_prefix(hosts) == prefix


def test_the_job_subnet_avoids_subnets_in_use_and_docker0() -> None:
    free = ipaddress.IPv4Network("172.20.0.0/16")
    in_use = [net for net in SUBNET_POOL.subnets(new_prefix=16) if net != free]
    chooser = random.Random(7)
    for _ in range(50):
        assert free_subnet(24, in_use, chooser).subnet_of(free)
    assert not any(free_subnet(24, [], chooser).overlaps(DEFAULT_BRIDGE) for _ in range(200))


def test_hosts_have_fixed_addresses_listed_for_every_host() -> None:
    network = JobNetwork("sm-x", ipaddress.IPv4Network("172.21.3.0/24"))
    assert network.hosts_file(["algo-1", "algo-2", "algo-3"]) == {
        "algo-1": "172.21.3.2",
        "algo-2": "172.21.3.3",
        "algo-3": "172.21.3.4",
    }
