"""CLI start: how long `emulator --version`, `emulator list` and `emulator validate` take.

    .venv/bin/python benchmarks/cli_start.py [--quick] [--runs N]

Each command is a fresh process (the venv's ``emulator`` script, as a user runs it), timed
from its start to its exit; the baseline is ``python -c pass`` of the same interpreter,
measured in the same run. Commands and baseline alternate, N runs each (default 15; --quick:
5); the figure is the median. ``list`` reads a state dir holding 20 job records; ``validate``
checks a small request (one channel, two hyperparameters, one metric). Python's bytecode cache
is used as an installed package would use it (``PYTHONPYCACHEPREFIX`` in the run's temp dir,
never ``PYTHONDONTWRITEBYTECODE``; a warm-up run of each command fills it).

Target: each command <= 0.15 s (absolute), printed with the interpreter's own start beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emulator.state.store import JobStore

TARGET_SECONDS = 0.15
JOBS = 20

REQUEST = {
    "TrainingJobName": "cli-start-bench",
    "RoleArn": "arn:aws:iam::123456789012:role/Bench",
    "AlgorithmSpecification": {
        "TrainingImage": "sagemaker-emulator/python:latest",
        "TrainingInputMode": "File",
        "MetricDefinitions": [{"Name": "train:loss", "Regex": "loss=([0-9.]+)"}],
    },
    "HyperParameters": {"epochs": "3", "lr": "0.1"},
    "InputDataConfig": [
        {
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "./data/train"}},
        }
    ],
    "OutputDataConfig": {"S3OutputPath": "./output"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
    "StoppingCondition": {"MaxRuntimeInSeconds": 600},
}


def emulator_command() -> list[str]:
    script = Path(sys.executable).parent / "emulator"
    return [str(script)] if script.exists() else [sys.executable, "-m", "emulator"]


def fill_store(home: Path) -> None:
    """``JOBS`` finished jobs' records, as ``emulator list`` finds them."""
    store = JobStore(home)
    for index in range(JOBS):
        name = f"cli-start-{index:02}"
        store.create(
            {
                "TrainingJobName": name,
                "TrainingJobStatus": "Completed",
                "SecondaryStatus": "Completed",
                "CreationTime": "2024-01-01T00:00:00+00:00",
            }
        )


def timed(command: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} exited {result.returncode}: {result.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="five runs each")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if args.quick:
        args.runs = 5

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cli-start-bench-") as tmp:
        root = Path(tmp)
        fill_store(root / "home")
        (root / "request.json").write_text(json.dumps(REQUEST))
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env.update(EMULATOR_HOME=str(root / "home"), PYTHONPYCACHEPREFIX=str(root / "pycache"))
        emulator = emulator_command()
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "emulator --version": [*emulator, "--version"],
            "emulator list": [*emulator, "list"],
            "emulator validate": [*emulator, "validate", str(root / "request.json")],
        }
        for command in commands.values():  # warm-up: the bytecode cache
            timed(command, env)
        times: dict[str, list[float]] = {label: [] for label in commands}
        for index in range(args.runs):
            order = list(commands.items())
            for label, command in order if index % 2 == 0 else order[::-1]:
                times[label].append(timed(command, env))
    baseline = statistics.median(times["python -c pass"])
    print(f"CLI start, median of {args.runs} fresh processes each (target <= {TARGET_SECONDS} s)")
    print(f"{'command':<22} {'median s':>9} {'best s':>7} {'- python':>9}")
    verdicts = []
    for label, runs in times.items():
        median = statistics.median(runs)
        line = f"{label:<22} {median:9.3f} {min(runs):7.3f} {median - baseline:9.3f}"
        if label != "python -c pass":
            met = median <= TARGET_SECONDS
            verdicts.append(met)
            line += f"   {'met' if met else 'NO'}"
        print(line)
    after = os.getloadavg()[0]
    print(
        f"{'all targets met' if all(verdicts) else 'NOT all targets met'}; load average "
        f"before/after: {load:.1f}/{after:.1f} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
