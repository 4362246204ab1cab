"""The sharding planner: ShardedByS3Key / FullyReplicated assignment of objects to hosts."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.plan.channels import (
    entries_for_host,
    host_order,
    plan_channel,
    plan_data_source,
    shard,
)
from emulator.request.spec import DataSourceSpec, Host
from emulator.storage.base import Entry


def entry(name: str, size: int = 1) -> Entry:
    return Entry(name, f"prefix/{name}", size)


names = st.lists(st.text("abcxyz/0123456789", min_size=1, max_size=8), unique=True, max_size=60)
host_counts = st.integers(min_value=1, max_value=12)


@given(names, host_counts)
def test_every_object_goes_to_exactly_one_host(keys: list[str], count: int) -> None:
    entries = [entry(k) for k in keys]
    shards = [shard(entries, i, count) for i in range(count)]
    assigned = [e for part in shards for e in part]
    assert sorted(assigned) == sorted(entries)
    assert len(assigned) == len(set(assigned))


@given(names, host_counts, st.randoms())
def test_assignment_ignores_listing_order(keys: list[str], count: int, rng: random.Random) -> None:
    entries = [entry(k) for k in keys]
    shuffled = list(entries)
    rng.shuffle(shuffled)
    for index in range(count):
        assert shard(entries, index, count) == shard(shuffled, index, count)


@given(names, host_counts)
def test_counts_are_balanced(keys: list[str], count: int) -> None:
    entries = [entry(k) for k in keys]
    sizes = [len(shard(entries, i, count)) for i in range(count)]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the extra objects go to the first hosts


def test_round_robin_over_sorted_keys() -> None:
    entries = [entry(k) for k in ["e", "a", "d", "c", "b"]]
    assert [e.relative_path for e in shard(entries, 0, 2)] == ["a", "c", "e"]
    assert [e.relative_path for e in shard(entries, 1, 2)] == ["b", "d"]


def test_more_hosts_than_objects_leaves_some_empty() -> None:
    plan = plan_channel([entry("only")], "ShardedByS3Key", ["algo-1", "algo-2", "algo-3"])
    assert plan == {"algo-1": [entry("only")], "algo-2": [], "algo-3": []}


def test_fully_replicated_gives_everything_to_everyone() -> None:
    entries = [entry("b"), entry("a")]
    plan = plan_channel(entries, "FullyReplicated", ["algo-1", "algo-2"])
    assert plan == {"algo-1": sorted(entries), "algo-2": sorted(entries)}
    assert entries_for_host(entries, "FullyReplicated", 1, 2) == sorted(entries)


def test_hosts_are_ordered_by_number() -> None:
    hosts = [f"algo-{n}" for n in (10, 2, 1, 11, 3)]
    assert host_order(hosts) == ["algo-1", "algo-2", "algo-3", "algo-10", "algo-11"]
    entries = [entry(f"k{n:02d}") for n in range(11)]
    plan = plan_channel(entries, "ShardedByS3Key", hosts)
    assert list(plan) == host_order(hosts)  # the plan's order gives each host's shard index
    assert plan["algo-2"] == [entry("k01"), entry("k06")]
    assert plan["algo-10"] == [entry("k03"), entry("k08")]


def test_instance_groups_limit_the_hosts() -> None:
    hosts = [Host("algo-1", "cpu", "ml.m5.xlarge"), Host("algo-2", "gpu", "ml.p3.2xlarge")]
    hosts.append(Host("algo-3", "gpu", "ml.p3.2xlarge"))
    source = DataSourceSpec("S3Prefix", "s3://b/p", "ShardedByS3Key", instance_group_names=("gpu",))
    entries = [entry("a"), entry("b"), entry("c")]
    plan = plan_data_source(entries, source, hosts)
    assert plan == {"algo-2": [entry("a"), entry("c")], "algo-3": [entry("b")]}
    everyone = plan_data_source(entries, DataSourceSpec("S3Prefix", "s3://b/p"), hosts)
    assert set(everyone) == {"algo-1", "algo-2", "algo-3"}


@pytest.mark.parametrize(("index", "count"), [(0, 0), (2, 2), (-1, 3)])
def test_bad_host_index_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError):
        shard([entry("a")], index, count)
    with pytest.raises(ValueError):
        entries_for_host([entry("a")], "FullyReplicated", index, count)


def test_duplicate_host_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        plan_channel([entry("a")], "ShardedByS3Key", ["algo-1", "algo-1"])
