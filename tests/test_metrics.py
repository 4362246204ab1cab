"""MetricDefinitions (CONTRACT.md section 5): each regex is applied to every stdout/stderr line;
the first capture group (or the whole match) is the value; values that are not plain finite
floats are skipped; every point keeps its timestamp; FinalMetricDataList holds the last value
of each metric, in definition order."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from emulator.observe.metrics import MetricPoint, MetricsCollector, parse_metric_value
from emulator.request.spec import MetricDefinition


def collector(**regexes: str) -> MetricsCollector:
    return MetricsCollector([MetricDefinition(name, regex) for name, regex in regexes.items()])


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1.0),
        ("-0.5", -0.5),
        ("+2.25", 2.25),
        ("3e-4", 3e-4),
        ("1.5E+3", 1500.0),
        (".5", 0.5),
        ("7.", 7.0),
        ("  0.25\t", 0.25),
    ],
)
def test_plain_finite_decimals_are_values(text: str, value: float) -> None:
    assert parse_metric_value(text) == value


@pytest.mark.parametrize(
    "text",
    ["nan", "NaN", "inf", "-inf", "Infinity", "1_000", "0x10", "", " ", "1,5", "1e", "e5", "1e999"],
)
def test_anything_else_is_not_a_value(text: str) -> None:
    assert parse_metric_value(text) is None


@pytest.mark.parametrize(
    ("regex", "line", "value"),
    [
        # the first capture group is the value
        (r"loss=([0-9.]+)", "epoch 1 loss=0.25 acc=0.9", 0.25),
        (r"(\w+)=([0-9.]+)", "loss=0.25", None),  # group 1 is "loss": not a float
        (r"acc=([0-9.]+).*loss=([0-9.]+)", "acc=0.9 loss=0.25", 0.9),
        # the regex may match anywhere in the line
        (r"loss: ([-0-9.e]+)", "[12:00:01] step 3 loss: -1.5e-2 (best)", -0.015),
        # no group: the whole match
        (r"[0-9]+\.[0-9]+", "throughput 12.75 samples/s", 12.75),
        # only the first match in a line counts
        (r"loss=([0-9.]+)", "loss=1 loss=2", 1.0),
        # a group that did not take part in the match gives no value
        (r"loss=(x)?", "loss=", None),
        # non-floats are skipped
        (r"loss=(\S+)", "loss=nan", None),
        (r"loss=(\S+)", "loss=inf", None),
        (r"loss=(\S+)", "loss=1_000", None),
        (r"loss=(\S+)", "loss=0x10", None),
        (r"loss=(\S*)", "loss=", None),
        (r"loss=([0-9.]+)", "no metric here", None),
    ],
    ids=[
        "first-group",
        "group-not-a-float",
        "two-groups-first-wins",
        "match-anywhere",
        "whole-match-without-group",
        "first-match-in-line",
        "unmatched-optional-group",
        "nan",
        "inf",
        "underscores",
        "hex",
        "empty",
        "no-match",
    ],
)
def test_one_line_gives_the_first_group_as_a_float(
    regex: str, line: str, value: float | None
) -> None:
    metrics = collector(m=regex)
    points = metrics.feed(line, timestamp=100.0)
    assert [p.value for p in points] == ([] if value is None else [value])
    final = metrics.final_metric_data_list()
    assert final == (
        [] if value is None else [{"MetricName": "m", "Value": value, "Timestamp": iso(100.0)}]
    )


def test_stdout_and_stderr_lines_are_read_alike() -> None:
    # The log pump hands both streams' lines to the same feed; nothing distinguishes them.
    metrics = collector(loss=r"loss=([0-9.]+)")
    metrics.feed("loss=0.5", timestamp=1.0)  # a stdout line
    metrics.feed("WARNING loss=0.4", timestamp=2.0)  # a stderr line
    assert [p.value for p in metrics.series()["loss"]] == [0.5, 0.4]


def test_several_metrics_in_one_line() -> None:
    metrics = collector(
        train_loss=r"train_loss=([0-9.]+)",
        val_loss=r"val_loss=([0-9.]+)",
        epoch=r"epoch (\d+)",
    )
    points = metrics.feed("epoch 3 train_loss=0.30 val_loss=0.35", host="algo-2", timestamp=7.0)
    assert points == [
        MetricPoint("train_loss", 0.30, 7.0, "algo-2"),
        MetricPoint("val_loss", 0.35, 7.0, "algo-2"),
        MetricPoint("epoch", 3.0, 7.0, "algo-2"),
    ]


def test_every_point_is_kept_with_its_timestamp_and_host() -> None:
    metrics = collector(loss=r"loss=([0-9.]+)")
    metrics.feed("loss=3", host="algo-1", timestamp=10.0)
    metrics.feed("nothing", host="algo-1", timestamp=11.0)
    metrics.feed("loss=2", host="algo-2", timestamp=12.0)
    metrics.feed("loss=1", host="algo-1", timestamp=13.0)
    assert metrics.series() == {
        "loss": [
            MetricPoint("loss", 3.0, 10.0, "algo-1"),
            MetricPoint("loss", 2.0, 12.0, "algo-2"),
            MetricPoint("loss", 1.0, 13.0, "algo-1"),
        ]
    }


def test_final_metric_data_list_holds_the_last_value_in_definition_order() -> None:
    metrics = collector(
        **{"validation:loss": r"val_loss=([0-9.]+)", "train:loss": r"train_loss=([0-9.]+)"},
        never=r"never=([0-9.]+)",
    )
    metrics.feed("train_loss=0.9", timestamp=1.0)
    metrics.feed("train_loss=0.7", timestamp=2.0)
    metrics.feed("val_loss=0.8", timestamp=3.0)
    metrics.feed("train_loss=0.5", timestamp=4.0)
    assert metrics.final_metric_data_list() == [
        {"MetricName": "validation:loss", "Value": 0.8, "Timestamp": iso(3.0)},
        {"MetricName": "train:loss", "Value": 0.5, "Timestamp": iso(4.0)},
    ]


def test_without_definitions_nothing_is_collected() -> None:
    metrics = MetricsCollector([])
    assert metrics.feed("loss=1") == []
    assert metrics.final_metric_data_list() == []


def test_a_point_without_a_timestamp_is_stamped_now() -> None:
    metrics = collector(loss=r"loss=([0-9.]+)")
    before = datetime.now(UTC).timestamp()
    [point] = metrics.feed("loss=1")
    assert before <= point.timestamp <= datetime.now(UTC).timestamp()


def test_feeding_from_one_thread_per_host_loses_no_point() -> None:
    metrics = collector(loss=r"loss=([0-9]+)", step=r"step=([0-9]+)")
    hosts, lines = 8, 500

    def pump(host: str) -> None:
        for i in range(lines):
            metrics.feed(f"step={i} loss={i}", host=host)
            metrics.final_metric_data_list()  # readers run while writers write

    threads = [threading.Thread(target=pump, args=(f"algo-{n}",)) for n in range(1, hosts + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    series = metrics.series()
    assert {name: len(points) for name, points in series.items()} == {
        "loss": hosts * lines,
        "step": hosts * lines,
    }
    for host in range(1, hosts + 1):
        mine = [p.value for p in series["loss"] if p.host == f"algo-{host}"]
        assert mine == [float(i) for i in range(lines)]
