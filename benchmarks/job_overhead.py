"""A job's fixed cost: a trivial job (``/bin/true``) through the emulator and straight on Docker.

    .venv/bin/python benchmarks/job_overhead.py [--quick] [--rounds R] [--only cli|api|hosts]

Three cases, each against a baseline measured in the same run, same image and command
(``sagemaker-emulator/busybox:latest``, ``/bin/true``):

    cli     ``emulator run --quiet --image ... --entrypoint /bin/true`` (a fresh process each
            time) vs ``docker run --rm --entrypoint /bin/true ...``          target <= 1.5x
    api     ``run_training_job`` in this process (after a warm-up job) vs docker-py's
            ``client.containers.run(..., remove=True)``                       target <= 1.25x
    hosts   a 4-host job (``emulator run --instance-count 4``) vs four ``docker run --rm``
            started at once, waited for together                             target <= 2x

Each side is timed from its start to its end: the emulator's job from the command (or the
call) to the record written and everything removed; the CLI's process starts its interpreter,
imports, validates the request, runs the job. Python's bytecode cache is used as an installed
package would use it (the children get ``PYTHONPYCACHEPREFIX`` in the run's temp dir and
never ``PYTHONDONTWRITEBYTECODE``; a warm-up run fills the cache).

Each side runs R times (default 7; --quick: 3), the emulator and its baseline alternating, the
emulator first in odd rounds, so that noise from the machine hits both alike. The ratio is the
median of the emulator's times over the median of the baseline's; the best of each is printed
too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from emulator import RunOptions, run_training_job

IMAGE = "sagemaker-emulator/busybox:latest"
COMMAND = ["/bin/true"]
TARGETS = {"cli": 1.5, "api": 1.25, "hosts": 2.0}
HOSTS = 4


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        (root / "work").mkdir()
        (root / "output").mkdir()
        self.env = {
            key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"
        }
        self.env.update(
            EMULATOR_HOME=str(root / "home"),
            TMPDIR=str(root / "work"),
            PYTHONPYCACHEPREFIX=str(root / "pycache"),
        )
        self.client = docker.from_env()

    def name(self) -> str:
        self.count += 1
        return f"overhead-{os.getpid()}-{self.count}"

    def timed(self, command: list[str]) -> float:
        began = time.perf_counter()
        result = subprocess.run(command, env=self.env, capture_output=True, text=True)
        seconds = time.perf_counter() - began
        if result.returncode != 0:
            sys.exit(f"{' '.join(command)} exited {result.returncode}: {result.stderr}")
        return seconds

    def docker_run(self) -> float:
        return self.timed(["docker", "run", "--rm", "--entrypoint", COMMAND[0], IMAGE])

    def docker_runs(self, count: int) -> float:
        command = ["docker", "run", "--rm", "--entrypoint", COMMAND[0], IMAGE]
        began = time.perf_counter()
        processes = [
            subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL) for _ in range(count)
        ]
        codes = [process.wait() for process in processes]
        seconds = time.perf_counter() - began
        if any(codes):
            sys.exit(f"docker run exited {codes}")
        return seconds

    def emulator_cli(self, hosts: int = 1) -> float:
        command = [sys.executable, "-m", "emulator", "run", "--quiet", "--image", IMAGE]
        command += [f"--entrypoint={item}" for item in COMMAND]
        command += ["--job-name", self.name(), "--output", str(self.root / "output")]
        if hosts > 1:
            command += ["--instance-count", str(hosts)]
        return self.timed(command)

    def docker_py(self) -> float:
        began = time.perf_counter()
        self.client.containers.run(IMAGE, entrypoint=COMMAND, remove=True)
        return time.perf_counter() - began

    def emulator_api(self) -> float:
        options = RunOptions(home=self.root / "home", work_root=self.root / "work")
        began = time.perf_counter()
        record = run_training_job(self.request(), options)
        seconds = time.perf_counter() - began
        if record["TrainingJobStatus"] != "Completed":
            sys.exit(f"{record['TrainingJobName']}: {record.get('FailureReason')}")
        return seconds

    def request(self) -> dict[str, Any]:
        return {
            "TrainingJobName": self.name(),
            "RoleArn": "arn:aws:iam::123456789012:role/Bench",
            "AlgorithmSpecification": {
                "TrainingImage": IMAGE,
                "TrainingInputMode": "File",
                "ContainerEntrypoint": COMMAND,
            },
            "OutputDataConfig": {"S3OutputPath": str(self.root / "output")},
            "ResourceConfig": {
                "InstanceType": "ml.m5.large",
                "InstanceCount": 1,
                "VolumeSizeInGB": 1,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        }


def measure(
    rounds: int, emulator: Callable[[], float], baseline: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """Both sides once as a warm-up, then ``rounds`` times each, alternating."""
    emulator()
    baseline()
    emulated: list[float] = []
    based: list[float] = []
    for index in range(rounds):
        if index % 2:
            emulated.append(emulator())
            based.append(baseline())
        else:
            based.append(baseline())
            emulated.append(emulator())
    return emulated, based


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three rounds per case")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", choices=tuple(TARGETS))
    args = parser.parse_args()
    if args.quick:
        args.rounds = 3

    load = os.getloadavg()[0]
    began = time.perf_counter()
    verdicts: list[bool] = []
    with tempfile.TemporaryDirectory(prefix="overhead-bench-") as tmp:
        bench = Bench(Path(tmp))
        cases: dict[str, tuple[str, str, Callable[[], float], Callable[[], float]]] = {
            "cli": ("emulator run", "docker run --rm", bench.emulator_cli, bench.docker_run),
            "api": (
                "run_training_job",
                "containers.run(remove=True)",
                bench.emulator_api,
                bench.docker_py,
            ),
            "hosts": (
                f"emulator run, {HOSTS} hosts",
                f"{HOSTS} x docker run --rm at once",
                lambda: bench.emulator_cli(HOSTS),
                lambda: bench.docker_runs(HOSTS),
            ),
        }
        print(f"trivial job ({' '.join(COMMAND)} in {IMAGE}), {args.rounds} rounds alternating")
        print(
            f"{'emulator':<26} {'baseline':<32} {'median s':>13} {'best s':>13} "
            f"{'ratio':>6} {'target':>7}"
        )
        for case, (label, base_label, emulator, baseline) in cases.items():
            if args.only not in (None, case):
                continue
            emulated, based = measure(args.rounds, emulator, baseline)
            ratio = statistics.median(emulated) / statistics.median(based)
            met = ratio <= TARGETS[case]
            verdicts.append(met)
            print(
                f"{label:<26} {base_label:<32} "
                f"{statistics.median(emulated):6.3f}/{statistics.median(based):.3f} "
                f"{min(emulated):6.3f}/{min(based):.3f} {ratio:5.2f}x "
                f"<={TARGETS[case]}x {'met' if met else 'NO'}",
                flush=True,
            )
        bench.client.close()
    after = os.getloadavg()[0]
    print(
        f"{'all targets met' if all(verdicts) else 'NOT all targets met'}; "
        f"{time.perf_counter() - began:.0f} s; load average before/after: {load:.1f}/{after:.1f} "
        f"on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
