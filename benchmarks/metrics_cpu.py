"""Metrics CPU: what MetricDefinitions cost the emulator per log line, in-process.

    .venv/bin/python benchmarks/metrics_cpu.py [--quick] [--lines N] [--batch B] [--repeat R]

No container: the lines are made in memory, then matched two ways, in the same run:

    per line    the straightforward rule: for each line, each definition's ``re.search``,
                its first group (or the match) checked as a plain finite number
                (``parse_metric_value``); every point kept in order
    batches     ``MetricsCollector.feed_lines`` on B lines at a time (default 10,000, about
                what the log pump hands on at full speed), as a job's log consumer calls it

Both must give the very same points (checked: same values, same order, per metric). Two
workloads, N lines each (default 1,000,000; --quick: 100,000, one round):

    training    the lines and the 10 MetricDefinitions of log_throughput.py (a step line
                with train_loss, every 100 steps a validation line; 5 definitions never match)
    sdk         10 regexes in the style of SageMaker's docs and examples (leading ``.*``,
                ``\\s*``, ``[^,]``, ``(?i)``, ``^``/``$``) over a mixed log (progress bars,
                dict-like HF lines, XGBoost lines, epochs...)

Each figure is the CPU time (process time) of the best of R rounds (default 2); in each round
both ways run, taking turns, so that a spell of load on the machine (writeback after the
benchmarks before) hits both alike. Target: batches take at most a third of the per-line
loop's CPU on each workload.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Mapping
from functools import partial

from log_throughput import METRICS as TRAINING_METRICS

from emulator.observe.metrics import MetricsCollector, parse_metric_value
from emulator.request.spec import MetricDefinition

TARGET_RATIO = 3.0  # per line / batches, at least

SDK_METRICS = {
    "train:loss": r"loss: ([0-9\.]+)",
    "validation:accuracy": r".*?val_acc=([\d.]+)",
    "epoch": r"^epoch (\d+)",
    "step:loss": r"(?i)LOSS=(\S+)$",
    "eval:loss": r"eval_loss.*=\D*(.*?)$",
    "hf:loss": r"'loss': ([0-9]+(.|e\-)[0-9]+),?",
    "train:error": r"Train_error=(.*?);",
    "validation:rmse": (
        r".*\[[0-9]+\].*#011validation-rmse:([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?).*"
    ),
    "test:loss": r"Test set: Average loss:\s*([0-9\.]+)",
    "accuracy": r"accuracy=([^,]+),",
}

Points = dict[str, list[float]]


def training_lines(count: int) -> list[str]:
    """log_throughput.py's script, as lines."""
    lines = []
    for i in range(count):
        lines.append(f"step={i} train_loss={1.0 / (i + 1):.6f}")
        if i % 100 == 99 and len(lines) < count:
            lines.append(
                f"validation: val_loss={2.0 / (i + 1):.6f} val_acc=0.{i % 1000:03d} "
                f"val_f1=0.5 epoch={i // 10000}"
            )
    return lines[:count]


def sdk_lines(count: int) -> list[str]:
    """A mixed training log: most lines match nothing, several regexes match some."""
    kinds: list[Callable[[int], str]] = [
        lambda i: f" {i % 100:3d}%|#####     | {i % 1000}/1000 [00:12<00:15, 36.{i % 10}it/s]",
        lambda i: f"Train Epoch: {i // 500} [{i % 60000}/60000] loss: {1 / (i + 1):.4f}",
        lambda i: f"{{'loss': {1 / (i + 2):.4f}, 'learning_rate': 4.9e-05, 'epoch': 0.{i % 99}}}",
        lambda i: f"[2024-01-01 00:00:{i % 60:02d}.000 algo-1:7 INFO utils.py:27] RULE_JOB_STOP",
        lambda i: f"[{i}]#011train-rmse:{3 / (i + 1):.5f}#011validation-rmse:{4 / (i + 1):.5f}",
        lambda i: f"step {i} LOSS={1 / (i + 3):.5f}",
        lambda i: f"epoch {i // 1000}",
        lambda i: f"{{'eval_loss': {1 / (i + 4):.4f}, 'eval_runtime': 1.5, 'epoch': 2.0}}",
        lambda i: f"Test set: Average loss: {1 / (i + 5):.4f}, Accuracy: 9{i % 10}%",
        lambda i: f"#metrics {{'accuracy={i % 97 / 100:.2f}, f1=0.5, val_acc=0.{i % 90}'}}",
        lambda i: f"INFO:root:batch {i} done in {i % 7}.2 ms; Train_error={i % 13}.0; nan",
        lambda i: "Downloading shards: 100%|##########| 2/2 [00:01<00:00,  1.26it/s]",
    ]
    weights = [30, 10, 5, 20, 3, 5, 1, 2, 2, 2, 3, 17]  # out of 100
    cycle = [kind for kind, weight in zip(kinds, weights, strict=True) for _ in range(weight)]
    step = 37  # spread the kinds over the cycle
    return [cycle[(i * step) % len(cycle)](i) for i in range(count)]


def per_line(definitions: list[MetricDefinition], lines: list[str]) -> Points:
    """The rule as written: each line, each definition."""
    compiled = [(d.name, re.compile(d.regex)) for d in definitions]
    points: Points = {d.name: [] for d in definitions}
    for line in lines:
        for name, pattern in compiled:
            match = pattern.search(line)
            if match is None:
                continue
            text = match.group(1 if pattern.groups else 0)
            if text is not None and (value := parse_metric_value(text)) is not None:
                points[name].append(value)
    return points


def batches(definitions: list[MetricDefinition], lines: list[str], size: int) -> Points:
    collector = MetricsCollector(definitions, keep_series=False)
    points: Points = {d.name: [] for d in definitions}
    for start in range(0, len(lines), size):
        for found in collector.feed_lines(lines[start : start + size], "algo-1", 1.0):
            points[found.name] += found.values
    return points


def best_cpu(
    ways: Mapping[str, Callable[[], Points]], repeat: int
) -> dict[str, tuple[float, Points]]:
    """Each way's best CPU time over ``repeat`` rounds, and its points; the ways take turns."""
    best: dict[str, tuple[float, Points]] = {}
    for _ in range(repeat):
        for name, run in ways.items():
            started = time.process_time()
            points = run()
            spent = time.process_time() - started
            if name not in best or spent < best[name][0]:
                best[name] = (spent, points)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 lines, one round")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000, help="lines per feed_lines call")
    parser.add_argument("--repeat", type=int, default=2, help="best of R rounds")
    args = parser.parse_args()
    if args.lines < 1 or args.batch < 1 or args.repeat < 1:
        parser.error("--lines, --batch and --repeat must be at least 1")
    lines_count, repeat = (100_000, 1) if args.quick else (args.lines, args.repeat)
    workloads = {
        "training": (TRAINING_METRICS, training_lines),
        "sdk": (SDK_METRICS, sdk_lines),
    }
    print(f"metrics CPU: {lines_count:,} lines x 10 definitions, batches of {args.batch:,}")
    failed = False
    for name, (metrics, make) in workloads.items():
        definitions = [MetricDefinition(k, v) for k, v in metrics.items()]
        lines = make(lines_count)
        ways = {
            "per line": partial(per_line, definitions, lines),
            "batches": partial(batches, definitions, lines, args.batch),
        }
        measured = best_cpu(ways, repeat)
        (base, expected), (fast, found) = measured["per line"], measured["batches"]
        points = sum(map(len, expected.values()))
        if found != expected:
            failed = True
            print(f"  {name}: the batches' points differ from the per-line rule's")
            continue
        ratio = base / fast if fast else float("inf")
        verdict = "met" if ratio >= TARGET_RATIO else "NO"
        print(
            f"  {name:9s} {points:>9,} points  per line {base:6.2f} s CPU "
            f"({points / base:>10,.0f} points/s)  batches {fast:6.2f} s CPU "
            f"({points / fast:>10,.0f} points/s)  {ratio:4.1f}x "
            f"(target >= {TARGET_RATIO:.0f}x: {verdict})"
        )
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
