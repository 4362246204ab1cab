"""Which objects each host receives for a channel, decided before any container exists.

FullyReplicated: every host gets every object.

ShardedByS3Key: SageMaker documents only "each host gets about 1/N of the objects, objects are
never split, some hosts may get none". Our rule, deterministic and independent of listing order:

1. objects are sorted by key (``relative_path``, then ``location``);
2. hosts are ordered by name with numbers compared as numbers (algo-1, algo-2, ..., algo-10);
3. object ``i`` goes to host ``i mod N``.

So every object goes to exactly one host, host counts differ by at most one, and with more hosts
than objects the last hosts get none. With InstanceGroupNames only the hosts of those groups get
the channel, and objects are sharded among them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from emulator.request.spec import DataSourceSpec, Distribution, Host
from emulator.storage.base import Entry


def _key_order(entries: Sequence[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (e.relative_path, e.location))


def host_order(names: Sequence[str]) -> list[str]:
    """Host names with their numbers compared as numbers (algo-2 before algo-10)."""
    if len(set(names)) != len(names):
        raise ValueError(f"host names must be unique: {list(names)}")

    def natural(name: str) -> list[tuple[int, int | str]]:
        parts = re.split(r"(\d+)", name)
        return [(1, int(p)) if p.isdigit() else (0, p) for p in parts]

    return sorted(names, key=natural)


def shard(entries: Sequence[Entry], host_index: int, host_count: int) -> list[Entry]:
    """The objects of host ``host_index`` (0-based) of ``host_count`` under ShardedByS3Key."""
    if host_count < 1 or not 0 <= host_index < host_count:
        raise ValueError(f"host index {host_index} is not in 0..{host_count - 1}")
    return _key_order(entries)[host_index::host_count]


def entries_for_host(
    entries: Sequence[Entry], distribution: Distribution, host_index: int, host_count: int
) -> list[Entry]:
    """One host's objects for a channel of the given S3DataDistributionType."""
    if distribution == "ShardedByS3Key":
        return shard(entries, host_index, host_count)
    if host_count < 1 or not 0 <= host_index < host_count:
        raise ValueError(f"host index {host_index} is not in 0..{host_count - 1}")
    return _key_order(entries)


def plan_channel(
    entries: Sequence[Entry], distribution: Distribution, hosts: Sequence[str]
) -> dict[str, list[Entry]]:
    """Every host's objects at once, keyed by host name in host order (see ``host_order``;
    ``list(plan).index(host)`` is the host's shard index). ``hosts`` may come in any order."""
    ordered = host_order(hosts)
    return {
        name: entries_for_host(entries, distribution, index, len(ordered))
        for index, name in enumerate(ordered)
    }


def plan_data_source(
    entries: Sequence[Entry], data_source: DataSourceSpec, hosts: Sequence[Host]
) -> dict[str, list[Entry]]:
    """The plan of one channel over the job's hosts, honouring InstanceGroupNames.

    Hosts outside the listed groups are absent from the result (the channel is not theirs);
    a host present with an empty list gets the channel with no objects."""
    groups = set(data_source.instance_group_names)
    names = [host.name for host in hosts if not groups or host.group in groups]
    return plan_channel(entries, data_source.distribution, names)
