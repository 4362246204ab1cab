"""Log throughput: a container printing a line per training step, through the emulator and
under a bare ``docker run``, measured in the same run.

    .venv/bin/python benchmarks/log_throughput.py [--quick] [--lines N] [--repeat R] [--cli]

The container (python image) prints N lines (default 1,000,000) as a training loop does: one
``step=<i> train_loss=<x>`` line per step and, every 100 steps, a validation line with four
more metrics. The job has 10 MetricDefinitions (5 match those lines, 5 never match), so every
step line gives a metric point: about 1.04 points per line, all of them stored.

    emulator    the job through the Python API (``run_training_job``), its log sink writing
                every line to a file (``--cli``: ``emulator run --quiet``, stdout to a file)
    docker run  ``docker run --rm`` of the same image and command, stdout to a file

Each side is timed from its start to its end (the emulator: the whole job, from the request
to the record, with every point in the store). Targets: emulator/docker <= 1.2x, and the
emulator process's peak RSS while streaming <= 150 MB (VmHWM, reset before the job; with
``--cli`` the CLI process's maximum RSS). Each figure is the best of R rounds (default 2),
docker and emulator alternating so noise from the machine hits both alike. Each round's CPU
time is printed too (the docker CLI's, the emulator process's): on a machine shared with
other work, what the emulator spends beyond the CLI is what it takes from the container.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator import RunOptions, run_training_job
from emulator.state.store import JobStore

IMAGE = "sagemaker-emulator/python:latest"
TARGET_RATIO = 1.2
TARGET_RSS_MB = 150.0

SCRIPT = """\
import os
n = int(os.environ['LINES'])
for i in range(n):
    print(f'step={i} train_loss={1.0 / (i + 1):.6f}')
    if i % 100 == 99:
        print(f'validation: val_loss={2.0 / (i + 1):.6f} val_acc=0.{i % 1000:03d} '
              f'val_f1=0.5 epoch={i // 10000}')
"""
ENTRYPOINT = ["python3", "-c", "import os; exec(os.environ['SCRIPT'])"]
METRICS = {
    "train:loss": r"train_loss=([0-9.e-]+)",
    "validation:loss": r"val_loss=([0-9.e-]+)",
    "validation:accuracy": r"val_acc=([0-9.]+)",
    "validation:f1": r"val_f1=([0-9.]+)",
    "epoch": r"epoch=(\d+)",
    "train:accuracy": r"train_acc=([0-9.]+)",
    "learning_rate": r"lr=([0-9.e-]+)",
    "throughput": r"samples/s: ([0-9.]+)",
    "grad_norm": r"grad_norm=([0-9.e+-]+)",
    "validation:auc": r"val_auc=([0-9.]+)",
}


def expected_lines(lines: int) -> int:
    return lines + lines // 100


@dataclass(frozen=True)
class Measure:
    seconds: float
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0  # user + system of the process timed (docker: the CLI)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def docker_run(lines: int, out: Path) -> Measure:
    command = ["docker", "run", "--rm", "-e", f"LINES={lines}", "-e", f"SCRIPT={SCRIPT}"]
    cpu = children_cpu()
    started = time.perf_counter()
    with open(out, "wb") as stdout:
        subprocess.run([*command, IMAGE, *ENTRYPOINT], stdout=stdout, check=True)
    seconds = time.perf_counter() - started
    cpu = children_cpu() - cpu
    check_lines(out, lines, "docker run")
    return Measure(seconds, cpu_seconds=cpu)


def request(name: str, lines: int, output: Path) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/Bench",
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ENTRYPOINT,
            "MetricDefinitions": [{"Name": k, "Regex": v} for k, v in METRICS.items()],
        },
        "Environment": {"SCRIPT": SCRIPT, "LINES": str(lines)},
        "OutputDataConfig": {"S3OutputPath": str(output)},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


class FileSink:
    """Every line to a file, as a user's sink would do (buffered, flushed per batch)."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close)

    def __call__(self, host: str, line: str) -> None:
        self._file.write(line + "\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux: ``5`` to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emulator_api(root: Path, name: str, lines: int, out: Path) -> Measure:
    sink = FileSink(out)
    options = RunOptions(home=root / "home", work_root=root / "work", log_sink=sink)
    reset_peak_rss()
    cpu = own_cpu()
    started = time.perf_counter()
    record = run_training_job(request(name, lines, root / "output"), options)
    seconds = time.perf_counter() - started
    cpu = own_cpu() - cpu
    rss = peak_rss_mb()
    sink.close()
    check_record(root, record, lines)
    check_lines(out, lines, "emulator")
    return Measure(seconds, rss, cpu)


def emulator_cli(root: Path, name: str, lines: int, out: Path) -> Measure:
    command = [sys.executable, "-m", "emulator", "run", "--quiet", "--image", IMAGE]
    for item in ENTRYPOINT:
        command += [f"--entrypoint={item}"]
    for key, regex in METRICS.items():
        command += ["--metric", f"{key}={regex}"]
    command += ["--env", f"SCRIPT={SCRIPT}", "--env", f"LINES={lines}"]
    command += ["--job-name", name, "--output", str(root / "output")]
    env = {**os.environ, "EMULATOR_HOME": str(root / "home"), "TMPDIR": str(root / "work")}
    started = time.perf_counter()
    with open(out, "wb") as stdout:
        process = subprocess.Popen(command, stdout=stdout, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"emulator run exited {process.returncode}")
    check_lines(out, lines, "emulator run")
    return Measure(seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


def check_lines(path: Path, lines: int, who: str) -> None:
    with open(path, "rb") as stream:
        count = sum(block.count(b"\n") for block in iter(lambda: stream.read(1 << 20), b""))
    if count != expected_lines(lines):
        sys.exit(f"{who}: {count} lines in {path}, {expected_lines(lines)} expected")


def check_record(root: Path, record: dict[str, Any], lines: int) -> None:
    name = record["TrainingJobName"]
    if record["TrainingJobStatus"] != "Completed":
        sys.exit(f"bench job {name}: {record['TrainingJobStatus']} {record.get('FailureReason')}")
    final = {m["MetricName"]: m["Value"] for m in record["FinalMetricDataList"]}
    if final.get("train:loss") != round(1.0 / lines, 6):
        sys.exit(f"bench job {name}: final train:loss {final.get('train:loss')}")
    points = JobStore(root / "home").count_metrics(name)
    wanted = lines + 4 * (lines // 100)
    if points != wanted:
        sys.exit(f"bench job {name}: {points} metric points stored, {wanted} expected")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 lines, one round")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="best of R rounds")
    parser.add_argument("--cli", action="store_true", help="through `emulator run`, not the API")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.repeat = 100_000, 1

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="log-bench-") as tmp:
        root = Path(tmp)
        (root / "work").mkdir()
        (root / "output").mkdir()
        docker: list[Measure] = []
        emulator: list[Measure] = []
        for round_ in range(args.repeat):
            docker.append(docker_run(args.lines, root / "docker.out"))
            name = f"logbench-{os.getpid()}-{round_}"
            run = emulator_cli if args.cli else emulator_api
            emulator.append(run(root, name, args.lines, root / "emulator.out"))
    best_docker = min(m.seconds for m in docker)
    best_emulator = min(m.seconds for m in emulator)
    rss = max(m.peak_rss_mb for m in emulator)
    ratio = best_emulator / best_docker
    via = "emulator run (CLI)" if args.cli else "run_training_job (API)"
    print(f"{args.lines:,} lines, {len(METRICS)} MetricDefinitions, best of {args.repeat}")
    print(f"{'docker run --rm, stdout to a file':<44} {best_docker:8.2f} s")
    print(f"{via + ', lines to a file':<44} {best_emulator:8.2f} s")
    rounds = ", ".join(
        f"{d.seconds:.2f}/{e.seconds:.2f}" for d, e in zip(docker, emulator, strict=True)
    )
    print(f"rounds (docker/emulator s): {rounds}")
    cpu = ", ".join(
        f"{d.cpu_seconds:.2f}/{e.cpu_seconds:.2f}" for d, e in zip(docker, emulator, strict=True)
    )
    print(f"CPU of the docker CLI/of the emulator process (s): {cpu}")
    verdict = "met" if ratio <= TARGET_RATIO else "NO"
    print(f"target: emulator <= {TARGET_RATIO}x docker run: {verdict} ({ratio:.2f}x)")
    verdict = "met" if rss <= TARGET_RSS_MB else "NO"
    print(f"target: emulator peak RSS <= {TARGET_RSS_MB:.0f} MB: {verdict} ({rss:.0f} MB)")
    after = os.getloadavg()[0]
    print(f"load average before/after: {load:.1f}/{after:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
