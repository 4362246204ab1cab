"""MetricDefinitions (CONTRACT.md section 5): each regex is applied to every stdout/stderr line;
the first capture group (or the whole match) is the value; values that are not plain finite
floats are skipped; every point keeps its timestamp; FinalMetricDataList holds the last value
of each metric, in definition order."""

from __future__ import annotations

import math
import random
import re
import threading
import time
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.observe.metrics import (
    MetricPoint,
    MetricsCollector,
    parse_metric_value,
    parse_metric_values,
)
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


# -- many lines at once (the job's log consumers) --------------------------------------------

LINE_PIECES = [
    "loss=",
    "5",
    "loss=1,2",
    "",
    " ",
    "val=3",
    "xy1",
    "a+1",
    "LOSS=9",
    "1e5",
    "nan",
    "inf",
    "epoch 3 loss=0.25 acc=0.9",
    "1_000",
    "é",
    "\t",
]


@pytest.mark.parametrize(
    "regex",
    [
        r"loss=([0-9.]+)",
        r"^loss=(\d+)$",
        r"loss=\s*(\S*)",  # may run over a line's end in the joined text
        r"loss=([^,]*)",
        r"(\d+)",
        r"\d*",  # empty matches
        r"x(?=y)y(\d)",  # lookahead: line by line
        r"(\d+)\Z",
        r"a++(\d)",
        r"(?i)loss=(\d+)",
        r"(?s)loss=(.+)",
        r"\bval\b=(\d+)",
        r"(?P<v>[0-9.e]+)\s*$",
        r"\B(\d)",
        r"[\s\S]*?(\d)",
    ],
)
def test_many_lines_at_once_give_the_points_of_each_line_alone(regex: str) -> None:
    rng = random.Random(regex)
    lines = ["".join(rng.choices(LINE_PIECES, k=rng.randint(0, 4))) for _ in range(3000)]
    one_by_one = collector(m=regex)
    expected = [p.value for line in lines for p in one_by_one.feed(line, timestamp=5.0)]
    batch = collector(m=regex)
    found = batch.feed_lines(lines, host="algo-3", timestamp=5.0)
    assert [v for group in found for v in group.values] == expected
    assert {(g.name, g.host, g.timestamp) for g in found} <= {("m", "algo-3", 5.0)}
    assert batch.final_metric_data_list() == one_by_one.final_metric_data_list()


def test_many_lines_give_each_metrics_values_in_line_order() -> None:
    metrics = collector(loss=r"loss=([0-9]+)", acc=r"acc=([0-9.]+)")
    found = metrics.feed_lines(["loss=3 acc=0.5", "x", "loss=2", "acc=0.7 loss=1"], "algo-1", 9.0)
    assert [(g.name, list(g.values)) for g in found] == [("loss", [3, 2, 1]), ("acc", [0.5, 0.7])]
    assert metrics.feed_lines([], "algo-1") == []
    assert MetricsCollector([]).feed_lines(["loss=1"]) == []


@pytest.mark.parametrize(
    "texts",
    [
        ["1", "-0.5", " 2 ", "3e-4", ".5", "7."],
        ["1", None, "2"],
        ["1", "nan", "2"],
        ["1", "1e999", "2"],
        ["1e308", "1e308", "-1e308"],  # each finite, their sum not
        ["1_000", "0x10", "", "1e", "e5", "+", "1.2.3", "--1"],
        ["١٢", "1"],  # other digits: float() takes them, the rule does not
        [],
    ],
)
def test_values_in_bulk_follow_the_rule_for_one(texts: list[str | None]) -> None:
    one_by_one = [parse_metric_value(t) for t in texts if t is not None]
    assert parse_metric_values(texts) == [v for v in one_by_one if v is not None]


def test_the_final_value_is_the_last_by_time_whichever_host_was_read_last() -> None:
    metrics = MetricsCollector([MetricDefinition("loss", r"loss=(\d+)")], keep_series=False)
    metrics.feed_lines(["loss=1", "loss=2"], "algo-1", timestamp=20.0)
    metrics.feed_lines(["loss=9"], "algo-2", timestamp=10.0)  # read later, stamped earlier
    assert metrics.final_metric_data_list() == [
        {"MetricName": "loss", "Value": 2.0, "Timestamp": iso(20.0)}
    ]
    assert metrics.series() == {}  # the store keeps the points, not memory


# -- batches against the rule as written (hypothesis) ----------------------------------------
#
# ``reference`` is the straightforward reading of the rule, line by line; ``feed_lines`` must
# give the very same points for any regex and any lines: odd numbers, \r, blanks of other
# scripts, other digits, and regexes whose meaning at a line's edge is delicate.

_PLAIN_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def reference(regexes: dict[str, str], lines: list[str]) -> dict[str, list[float]]:
    points: dict[str, list[float]] = {name: [] for name in regexes}
    for name, regex in regexes.items():
        pattern = re.compile(regex)
        for line in lines:
            match = pattern.search(line)
            if match is None:
                continue
            text = match.group(1 if pattern.groups else 0)
            if text is None or not _PLAIN_DECIMAL.fullmatch(text.strip()):
                continue
            value = float(text.strip())
            if math.isfinite(value):
                points[name].append(value)
    return points


def batched(regexes: dict[str, str], lines: list[str]) -> dict[str, list[float]]:
    metrics = MetricsCollector([MetricDefinition(n, r) for n, r in regexes.items()])
    points: dict[str, list[float]] = {name: [] for name in regexes}
    for group in metrics.feed_lines(lines, "algo-1", 1.0):
        points[group.name] += group.values
    series = {name: [p.value for p in kept] for name, kept in metrics.series().items()}
    assert series == {name: values for name, values in points.items() if values}
    return points


NUMBERS = [
    "0", "1", "-0.5", "+2.", ".5", "7.", "3e-4", "1E+3", "1e999", "-1e-999", "00.25", "1.2.3",
    "--1", "+-1", "e5", "1e", ".", "-", "nan", "NaN", "inf", "-Infinity", "1_000", "0x10",
    "١٢", "\u0663.\u0665", "\xa01\xa0", "1\u2003", "\x1c2", "12", "0.000001", "9" * 20, "1,5",
]  # fmt: skip
WORDS = [
    "loss", "loss=", "loss: ", "LOSS=", "Loss=", "val_acc=", "epoch ", "epoch=", "acc=",
    "train_loss=", "'loss': ", "Train_error=", "#011validation-rmse:", "[12]", "=", ":", ";",
    ",", " ", "  ", "\t", "\r", "\x0b", "\x0c", "\x85", "\u2028", "é", "ß", "K", "\u212a",
    "x", "y", "ab", "_", "(", ")", "[", "]", "{", "}", "|", "%", "/", "\\", "#",
    "\u017f", "\u0131", "\u0130", "lo\u017fs=", "\u212aey=",  # what (?i) folds
]  # fmt: skip
line_text = st.lists(st.sampled_from(NUMBERS + WORDS) | st.text(max_size=3), max_size=8).map(
    "".join
)
one_line = line_text.map(lambda text: text.replace("\n", ""))  # lines.py cuts at \n
ascii_line = st.lists(  # all-ASCII batches are searched in lowercase for (?i) regexes
    st.sampled_from([w for w in NUMBERS + WORDS if w.isascii() and w != "\n"]).flatmap(
        lambda word: st.sampled_from([word, word.upper(), word.title()])
    ),
    max_size=8,
).map("".join)
KEYS = [
    "loss: ", "val_acc=", "epoch ", "LOSS=", "Loss=", "loss=", "train_loss=", "epoch=",
    "samples/s: ", "Train_error=", "'loss': ", "{'eval_loss': ", "[3]#011validation-rmse:",
    "Test set: Average loss: ", "accuracy=", "val=", "x", "y", "a", "\r", " ", "", "LO\u017fS=",
]  # fmt: skip
metric_line = st.tuples(
    one_line | ascii_line,
    st.sampled_from(KEYS),
    st.sampled_from(NUMBERS),
    st.sampled_from(["", ",", ";", " ", "\t", "|", "x", " done", ", acc=1"]),
).map("".join)  # a line with something like a metric in it
FILLER = "step 7 of 9: nothing to see"  # batches where a metric's lines are few
some_lines = st.lists(one_line | metric_line | st.just(FILLER), max_size=40) | st.lists(
    ascii_line | metric_line.filter(str.isascii) | st.just(FILLER), max_size=40
)

SAGEMAKER_REGEXES = [
    r"loss: ([0-9\.]+)",
    r".*?val_acc=([\d.]+)",
    r"^epoch (\d+)",
    r"(?i)LOSS=(\S+)$",
    r"loss=([0-9.e-]+)",
    r"train_loss=([0-9.e-]+)",
    r"epoch=(\d+)",
    r"samples/s: ([0-9.]+)",
    r"grad_norm=([0-9.e+-]+)",
    r"Train_error=(.*?);",
    r"'loss': ([0-9]+(.|e\-)[0-9]+),?",
    r"eval_loss.*=\D*(.*?)$",
    r".*\[[0-9]+\].*#011validation-rmse:([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?).*",
    r"Test set: Average loss:\s*([0-9\.]+)",
    r"accuracy=([^,]+),",
    r"loss=\s*(\S*)",
    r"loss=([^,]*)",
    r"(\d+)",
    r"\d*",
    r"x(?=y)y(\d)",
    r"(\d+)\Z",
    r"\A(\d+)",
    r"a++(\d)",
    r"(?s)loss=(.+)",
    r"\bval\b=(\d+)",
    r"(?P<v>[0-9.e]+)\s*$",
    r"\B(\d)",
    r"[\s\S]*?(\d)",
    r"(?<=loss=)([\d.]+)",
    r"(?<!\d)(\d)(?!\d)",
    r"(\d)(?=\s)",
    r"(?<=\s)(\d+)",
    r"(?<=(\d))",
    r"x|(?<=(\d))",
    r"\s*$",
    r"(?m)^\s*(\d+)\s*$",
    r"(?x) loss \s* = \s* (\d+)  # spaces and a comment",
    r"(?i:loss)=(?-i:x)?(\d+)",
    r"(a)?(?(1)b|c)(\d)",
    r"(\w)\1(\d)",
    r"(?>\s*)(\d)",
    r"\s*+(\d)",
    r"[^,]*,(\d)",
    r"[\x00-\x7f]+?(\d)",
    r"\n(\d)",
    r"x|\n",
    r"$",
    r"(\d+)|(\.\d+)",
    r"loss=(x)?",
    r"\r(\d)",
    r"[^\d\n]*(\d)",
    r"(?a)\w+=(\d)",
    r"(?:LOSS|loss)=([\d.]+)",
    r"(?i)key=(\d+)",
    r"(?i)lo[^s]s=(\S+)",
    r"(?i)loss=([^k]+)",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(SAGEMAKER_REGEXES), min_size=1, max_size=4), some_lines)
def test_batches_give_the_points_of_the_rule_line_by_line(
    regexes: list[str], lines: list[str]
) -> None:
    named = {f"m{i}": regex for i, regex in enumerate(regexes)}
    assert batched(named, lines) == reference(named, lines)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [  # not starting with their literal ("val_acc=", "loss=", "epoch "...)
            r".*?val_acc=([\d.]+)",
            r".*val_acc=([\d.]+)",
            r"^epoch (\d+)",
            r"(?i)LOSS=(\S+)$",
            r"(?i:loss)=(?-i:x)?(\d+)",
            r"\bval\b=(\d+)",
            r"\s*epoch=(\d+)",
            r"[\w:']*\s*loss=\s*([^,;]+)",
            r"(?s).*?'loss': ([0-9]+(.|e\-)[0-9]+),?",
            r".*\[[0-9]+\].*#011validation-rmse:([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?).*",
        ]
    ),
    st.lists(metric_line | one_line, max_size=6)
    | st.lists(metric_line.filter(str.isascii) | ascii_line, max_size=6),
    st.integers(0, 120),
    st.randoms(use_true_random=False),
)
def test_a_few_metric_lines_among_many_others(
    regex: str, few: list[str], others: int, rng: random.Random
) -> None:
    # When few lines hold a regex's literal, only those lines are searched.
    lines = [FILLER] * others + few
    rng.shuffle(lines)
    assert batched({"m": regex}, lines) == reference({"m": regex}, lines)


def _regexes() -> st.SearchStrategy[str]:
    """Small random regexes, built from what decides a match at a line's edge."""
    chars = st.sampled_from(
        [
            "a", "1", "=", "loss=", "é", " ", r"\.", ",", r"\d", r"\D", r"\s", r"\S", r"\w",
            r"\W", ".", "[^,]", r"[^\n,]", "[a-z]", r"[\x00-\x7f]", r"[\s\S]", r"[^\d]", r"\n",
            r"\r", "[0-9.eE+-]", "^", "$", r"\b", r"\B", r"\A", r"\Z", r"(?<=\d)", r"(?<!\s)",
            r"(?<=a.)", r"(?<![^=])", "[^s]", "[^k]", "s", "K", "[^a-z]",
        ]
    )  # fmt: skip
    values = st.sampled_from([r"(\d+)", r"([0-9.]+)", r"(\S+)", r"([^,]*)", r"(.*?)", "(a)"])
    # Unbounded repeats only of one character: nested ones would make re take forever.
    many = ["", "", "*", "+", "?", "*?", "+?", "{1,3}", "*+", "++"]
    leaves = values | st.tuples(chars, st.sampled_from(many)).map(lambda t: f"(?:{t[0]}){t[1]}")

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.lists(inner, min_size=2, max_size=4).map("".join),
            st.tuples(inner, inner).map("|".join),
            st.tuples(
                st.sampled_from(["(", "(?:", "(?>", "(?=", "(?!", "(?i:", "(?s:"]), inner
            ).map(lambda t: f"{t[0]}{t[1]})"),
            st.tuples(inner, st.sampled_from(["?", "??", "{0,2}"])).map(
                lambda t: f"(?:{t[0]}){t[1]}"
            ),
        )

    body = st.recursive(leaves, extend, max_leaves=8)
    return st.tuples(st.sampled_from(["", "(?i)", "(?s)", "(?m)", "(?a)"]), body).map("".join)


def _compiles(regex: str) -> bool:
    try:
        re.compile(regex)
    except re.error:
        return False
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(_regexes().filter(_compiles), some_lines)
def test_batches_agree_with_the_rule_for_random_regexes(regex: str, lines: list[str]) -> None:
    assert batched({"m": regex}, lines) == reference({"m": regex}, lines)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(SAGEMAKER_REGEXES), st.lists(line_text, max_size=10))
def test_a_line_holding_a_newline_is_still_searched_alone(regex: str, lines: list[str]) -> None:
    # lines.py never hands such a line on; the rule still holds for one.
    assert batched({"m": regex}, lines) == reference({"m": regex}, lines)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(NUMBERS) | st.text(max_size=6) | st.none(), max_size=12))
def test_values_in_bulk_follow_the_rule_for_one_whatever_the_text(
    texts: list[str | None],
) -> None:
    one_by_one = [parse_metric_value(t) for t in texts if t is not None]
    assert parse_metric_values(texts) == [v for v in one_by_one if v is not None]


@pytest.mark.parametrize(
    "regex",
    [r"loss=([^,]*)x", r"loss=([^,]*),", r"loss=\s*([\s\S]*)\|", r".*?val=(\d+)", r"(?s).*x"],
)
def test_a_big_batch_costs_time_linear_in_its_size(regex: str) -> None:
    # Joined naively, these regexes would run over the line ends of the whole batch at each
    # line (20,000 lines: minutes); the batch form keeps each search inside its line.
    lines = [f"step {i} loss={i}.5 done" for i in range(20_000)]
    metrics = collector(m=regex)
    started = time.process_time()
    found = metrics.feed_lines(lines, "algo-1", 1.0)
    assert time.process_time() - started < 2.0
    assert [v for group in found for v in group.values] == reference({"m": regex}, lines)["m"]


def test_a_rare_metric_among_many_lines_is_found_in_each_of_its_lines() -> None:
    # A leading ".*" cannot be skipped ahead by re: the lines holding the literal are.
    lines = [f"step {i}: nothing to see" for i in range(5000)]
    lines[17] = "epoch 1 val_acc=0.5"
    lines[4000] = "val_acc=0.75 then val_acc=0.8"
    lines[-1] = "val_acc=1"
    metrics = collector(acc=r".*val_acc=([\d.]+)")
    found = metrics.feed_lines(lines, "algo-1", 2.0)
    assert [v for group in found for v in group.values] == [0.5, 0.8, 1.0]
