"""`emulator metrics` and ``emulator.api.metrics`` / ``resource_use`` over a real store (no
engine): every point in every format, the plot without a terminal, the peaks against instance
types, and the engine's stats documents read as ``docker stats`` reads them."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from rich.console import Console

from emulator import api
from emulator.cli.metrics import RICH_ROWS
from emulator.cli.render import print_resource_use
from emulator.engine.stats import cpu_percent, sample_of, used_memory
from emulator.observe.resources import GPU_MEMORY_NOTE, resource_use
from emulator.plan.hosts import GIB
from emulator.state.store import CPU_PERCENT, MEMORY_BYTES, JobStore, MetricPoint
from tests.fixtures.cli_runner import Cli, assert_usage_error
from tests.fixtures.store_records import record_of

T0 = 1_800_000_000.0
LOSSES = [MetricPoint("loss", 1.0 / (i + 1), T0 + i, "algo-1") for i in range(5)]
LOSSES += [MetricPoint("loss", 2.0 / (i + 1), T0 + i + 0.5, "algo-2") for i in range(3)]
SYSTEM = [
    MetricPoint(name, value, T0 + i, host)
    for i in range(4)
    for host in ("algo-1", "algo-2")
    for name, value in ((MEMORY_BYTES, (i + 1) * 2**30), (CPU_PERCENT, 50.0 * i))
]


def stored_job(cli: Cli, name: str, points: bool = True, **members: Any) -> JobStore:
    store = JobStore(cli.home)
    record = record_of(name, **members)
    record["TrainingJobStatus"] = "Completed"
    store.create(record)
    if points:
        store.add_metrics(name, LOSSES)
        store.add_system_metrics(name, SYSTEM)
    return store


TWO_HOSTS = {
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1}
}


def test_every_point_is_listed_in_json_and_csv(cli: Cli) -> None:
    stored_job(cli, "points", **TWO_HOSTS)
    result = cli("metrics", "points", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["TrainingJobName"] == "points"
    found = document["Points"]
    assert len(found) == len(LOSSES) + len(SYSTEM)
    assert set(found[0]) == {"name", "host", "time", "timestamp", "value", "source"}
    definitions = [
        (p["name"], p["host"], p["timestamp"], p["value"])
        for p in found
        if p["source"] == "definitions"
    ]
    assert sorted(definitions) == sorted((p.name, p.host, p.timestamp, p.value) for p in LOSSES)
    assert [p["timestamp"] for p in found] == sorted(p["timestamp"] for p in found)
    assert found[0]["time"] == "2027-01-15T08:00:00.000Z"

    result = cli("metrics", "points", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == len(LOSSES) + len(SYSTEM)
    losses = [r for r in rows if r["source"] == "definitions"]
    assert sorted((r["host"], float(r["timestamp"]), float(r["value"])) for r in losses) == sorted(
        (p.host, p.timestamp, p.value) for p in LOSSES
    )
    assert {r["name"] for r in rows if r["source"] == "system"} == {MEMORY_BYTES, CPU_PERCENT}


def test_the_table_and_one_host(cli: Cli) -> None:
    stored_job(cli, "table", **TWO_HOSTS)
    result = cli("metrics", "table")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["time", "host", "metric", "value"]
    assert len(lines) == 1 + len(LOSSES) + len(SYSTEM)
    assert "4.0 GiB" in result.stdout and "150.0 %" in result.stdout

    only = cli("metrics", "table", "--host", "algo-2", "--format", "json")
    points = json.loads(only.stdout)["Points"]
    assert {p["host"] for p in points} == {"algo-2"}
    assert len(points) == 3 + len(SYSTEM) // 2
    assert_usage_error(cli("metrics", "table", "--host", "algo-7"), "has no host 'algo-7'")


def test_the_plot_draws_each_metric_without_a_terminal(cli: Cli) -> None:
    stored_job(cli, "plot", **TWO_HOSTS)
    result = cli("metrics", "plot", "--plot")
    assert result.exit_code == 0, result.output
    text = result.stdout
    for title in ("loss", f"{MEMORY_BYTES} (MiB)", CPU_PERCENT):
        assert title in text
    assert text.count("algo-1") == 3 and text.count("algo-2") == 3  # a legend per plot
    assert "\x1b[" not in text  # no colours when stdout is not a terminal
    assert "seconds since the first point" in text


def test_a_job_without_points_says_so(cli: Cli) -> None:
    stored_job(cli, "empty", points=False)
    for args in ([], ["--plot"], ["--format", "csv"]):
        result = cli("metrics", "empty", *args)
        assert result.exit_code == 0, result.output
        assert "Training job 'empty' has no metric points." in result.stderr
    assert cli("metrics", "empty", "--format", "csv").stdout.strip() == (
        "name,host,time,timestamp,value,source"
    )
    assert json.loads(cli("metrics", "empty", "--format", "json").stdout)["Points"] == []


def test_bad_input_is_one_clear_line(cli: Cli) -> None:
    assert_usage_error(cli("metrics", "nobody"), "No training job named 'nobody'")
    stored_job(cli, "both")
    result = cli("metrics", "both", "--plot", "--format", "json")
    assert result.exit_code == 2 and "choose one" in result.output
    assert "Traceback" not in result.output


def test_the_api_keeps_system_metrics_out_of_the_definitions(cli: Cli) -> None:
    store = stored_job(cli, "apart", **TWO_HOSTS)
    samples = api.metrics("apart", home=cli.home)
    assert len(samples) == len(LOSSES) + len(SYSTEM)
    assert {s.name for s in samples if not s.system} == {"loss"}
    assert {p.name for p in store.metrics("apart")} == {"loss"}  # what FinalMetricDataList reads
    described = api.describe("apart", home=cli.home)
    assert described["FinalMetricDataList"] == record_of("apart")["FinalMetricDataList"]


# -- peaks against instance types ---------------------------------------------------------


def memory_points(host: str, *gib: float) -> list[MetricPoint]:
    return [MetricPoint(MEMORY_BYTES, g * GIB, T0 + i, host) for i, g in enumerate(gib)]


def one_host(instance_type: str) -> dict[str, object]:
    config = {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 1}
    return record_of("job", ResourceConfig=config)


def test_a_peak_above_the_instance_memory_is_warned() -> None:
    record = one_host("ml.t3.medium")
    use = resource_use(record, memory_points("algo-1", 1.0, 4.3, 2.0))
    assert use.warnings == [
        "algo-1 peak 4.3 GiB: ml.t3.medium has 4 GiB; this job would be killed there"
    ]
    host = use.hosts[0]
    assert (host.samples, host.peak_memory_bytes) == (3, int(4.3 * GIB))
    assert (host.instance_vcpus, host.instance_memory_bytes) == (2, 4 * GIB)
    assert resource_use(record, memory_points("algo-1", 3.9)).fits


def test_a_type_without_figures_is_not_compared() -> None:
    use = resource_use(one_host("ml.m4.xlarge"), memory_points("algo-1", 1.0, 40.0))
    assert use.fits
    assert use.hosts[0].notes == (
        "algo-1: no vCPU and memory figures known for ml.m4.xlarge: not compared",
    )


def test_cpu_above_the_vcpus_is_warned_per_host() -> None:
    record = record_of(
        "cpu",
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1},
    )
    points = memory_points("algo-1", 1.0) + memory_points("algo-2", 1.0)
    points += [
        MetricPoint(CPU_PERCENT, 350.0, T0, "algo-2"),
        MetricPoint(CPU_PERCENT, 90, T0, "algo-1"),
    ]
    use = resource_use(record, points)
    assert [h.host for h in use.hosts] == ["algo-1", "algo-2"]
    assert use.hosts[0].fits
    assert use.warnings == [
        "algo-2 peak CPU 3.5 cores: ml.m5.large has 2 vCPUs; this job would run slower there"
    ]


def test_local_types_and_missing_samples_are_explained() -> None:
    record = record_of(
        "local", ResourceConfig={"InstanceType": "local", "InstanceCount": 1, "VolumeSizeInGB": 1}
    )
    use = resource_use(record, memory_points("algo-1", 30.0))
    assert use.fits
    assert use.hosts[0].notes == ("algo-1 runs as 'local': no instance type to compare with",)
    empty = resource_use(record_of("short"), [])
    assert empty.fits and empty.hosts[0].peak_memory_bytes is None
    assert "no resource samples" in empty.hosts[0].notes[0]
    gpu = record_of(
        "gpu",
        ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1},
    )
    assert (
        f"algo-1: {GPU_MEMORY_NOTE}" in resource_use(gpu, memory_points("algo-1", 1)).hosts[0].notes
    )


def test_instance_groups_name_each_host_type() -> None:
    groups = [
        {"InstanceGroupName": "a", "InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
        {"InstanceGroupName": "b", "InstanceType": "ml.t3.medium", "InstanceCount": 2},
    ]
    record = record_of("groups", ResourceConfig={"InstanceGroups": groups, "VolumeSizeInGB": 1})
    points = memory_points("algo-1", 6.0) + memory_points("algo-3", 6.0)
    use = resource_use(record, points)
    assert [(h.host, h.instance_type) for h in use.hosts] == [
        ("algo-1", "ml.m5.xlarge"),
        ("algo-2", "ml.t3.medium"),
        ("algo-3", "ml.t3.medium"),
    ]
    assert [h.fits for h in use.hosts] == [True, True, False]


# -- the engine's stats documents -----------------------------------------------------------


def stats(
    memory: dict[str, Any], cpu: int, pre_cpu: int, system: int, pre_system: int
) -> dict[str, Any]:
    return {
        "read": "2026-12-04T16:08:26.611965040Z",
        "memory_stats": memory,
        "cpu_stats": {
            "cpu_usage": {"total_usage": cpu},
            "system_cpu_usage": system,
            "online_cpus": 4,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": pre_cpu}, "system_cpu_usage": pre_system},
    }


def test_memory_is_counted_without_the_inactive_file_cache() -> None:
    v1 = {"usage": 1000, "stats": {"total_inactive_file": 300, "inactive_file": 1}}
    v2 = {"usage": 1000, "stats": {"inactive_file": 400}}
    assert used_memory(v1) == 700
    assert used_memory(v2) == 600
    assert used_memory({"usage": 1000, "stats": {"inactive_file": 5000}}) == 1000


def test_cpu_is_in_percent_of_one_core() -> None:
    # 4 CPUs, 4e9 ns of CPU time passed, the container used 1.5e9: 1.5 cores, 150 %.
    document = stats({"usage": 10}, 2_500_000_000, 1_000_000_000, 14_000_000_000, 10_000_000_000)
    assert cpu_percent(document) == pytest.approx(150.0)
    first = stats({"usage": 10}, 2_500_000_000, 0, 14_000_000_000, 0)
    assert cpu_percent(first) is None
    sample = sample_of(document)
    assert sample is not None
    assert sample.timestamp == pytest.approx(1796400506.611965)
    assert (sample.memory_bytes, sample.cpu_percent) == (10, pytest.approx(150.0))


def test_an_empty_document_is_no_sample() -> None:
    assert sample_of({"read": "0001-01-01T00:00:00Z", "memory_stats": {}}) is None
    assert sample_of({}) is None


def test_a_long_listing_is_written_as_aligned_lines(cli: Cli) -> None:
    store = stored_job(cli, "long", points=False)
    many = [MetricPoint("loss", float(i), T0 + i, "algo-1") for i in range(RICH_ROWS + 1)]
    store.add_metrics("long", many)
    result = cli("metrics", "long")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + len(many)
    assert lines[0].split() == ["time", "host", "metric", "value"]
    assert lines[-1].split() == ["2027-01-15T10:46:40.000Z", "algo-1", "loss", f"{RICH_ROWS:g}"]


def test_the_summary_says_nothing_of_resource_use_without_a_sample() -> None:
    console = Console(file=io.StringIO(), width=200)
    print_resource_use(console, resource_use(record_of("short"), []))
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]
    print_resource_use(console, resource_use(record_of("m5"), memory_points("algo-1", 1)))
    assert console.file.getvalue().startswith("Resource use (peaks")  # type: ignore[attr-defined]
