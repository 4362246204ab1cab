"""A job's fixed cost: a trivial job (``/bin/true``) through the emulator and straight on Docker.

    .venv/bin/python benchmarks/job_overhead.py [--quick] [--rounds R] [--only cli|api|hosts]
    .venv/bin/python benchmarks/job_overhead.py --breakdown [--rounds R]

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

Each side runs R times (default 11; --quick: 3), the emulator and its baseline alternating, the
emulator first in odd rounds, so that noise from the machine hits both alike (with 7 rounds the
CLI's ratio moved by 0.1x from one run to the next on this 2-vCPU VM). The ratio is the
median of the emulator's times over the median of the baseline's; the best of each is printed
too.

``--breakdown`` says where the time of a single-host job goes instead: R jobs through the
Python API and R ``containers.run`` beside them, every Engine API call timed (docker-py's and
the emulator's own HTTP requests, in whatever thread), grouped by what it does; "Python only"
is the time no engine call was under way (the union of the calls' intervals taken off the
total). Medians.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import requests

from emulator import RunOptions, run_training_job
from emulator.engine.http import UnixTransport

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


# What an Engine API call does, by the first pattern its method and path match.
CALL_KINDS = (
    ("connect", re.compile(r"GET /(v[\d.]+/)?(version|_ping)")),
    ("image check", re.compile(r"GET /v[\d.]+/images/")),
    ("network", re.compile(r"/v[\d.]+/networks")),
    ("create", re.compile(r"POST /v[\d.]+/containers/create")),
    ("attach, logs", re.compile(r"/containers/[^/]+/(attach|logs)")),
    ("start", re.compile(r"POST /v[\d.]+/containers/[^/]+/start")),
    ("exit: wait, inspect", re.compile(r"/containers/[^/]+/(wait|json)")),
    ("remove", re.compile(r"DELETE /v[\d.]+/containers/")),
)


class CallTimer:
    """Every HTTP request (any thread) with its start and end: docker-py's (the baseline) and
    the emulator's own client's (emulator/engine/http.py: requests, streams, attach)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float]] = []
        self._send = requests.Session.send
        self._ours = {
            name: getattr(UnixTransport, name) for name in ("request", "stream", "hijack")
        }

    def __enter__(self) -> CallTimer:
        timer = self

        def send(session: requests.Session, request: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return timer._send(session, request, **kwargs)
            finally:
                timer.calls.append(
                    (f"{request.method} {request.path_url}", began, time.perf_counter())
                )

        requests.Session.send = send  # type: ignore[method-assign, assignment]
        for name, original in self._ours.items():
            setattr(UnixTransport, name, self._timed(name, original))
        return self

    def _timed(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(transport: UnixTransport, *args: Any, **kwargs: Any) -> Any:
            method, path = ("POST", args[0]) if name == "hijack" else args[:2]
            began = time.perf_counter()
            try:
                return original(transport, *args, **kwargs)
            finally:
                self.calls.append((f"{method} {path}", began, time.perf_counter()))

        return call

    def __exit__(self, *exc: object) -> None:
        requests.Session.send = self._send  # type: ignore[method-assign]
        for name, original in self._ours.items():
            setattr(UnixTransport, name, original)


def covered(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of ``intervals``."""
    total, end = 0.0, -math.inf
    for began, ended in sorted(intervals):
        if ended > end:
            total += ended - max(began, end)
            end = ended
    return total


def breakdown_of(run: Callable[[], float]) -> dict[str, float]:
    """One run's seconds: in all, per kind of engine call, and with no call under way."""
    with CallTimer() as timer:
        began = time.perf_counter()
        run()
        ended = time.perf_counter()
    kinds: dict[str, list[tuple[float, float]]] = {}
    for call, start, end in timer.calls:
        kind = next((name for name, pattern in CALL_KINDS if pattern.search(call)), "other")
        kinds.setdefault(kind, []).append((max(start, began), min(end, ended)))
    result = {kind: covered(intervals) for kind, intervals in kinds.items()}
    result["total"] = ended - began
    result["Python only"] = ended - began - covered([i for v in kinds.values() for i in v])
    return result


def breakdown(bench: Bench, rounds: int) -> None:
    sides = {"run_training_job": bench.emulator_api, "containers.run": bench.docker_py}
    for run in sides.values():
        run()  # warm-up
    seen: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for _ in range(rounds):
        for side, run in sides.items():
            seen[side].append(breakdown_of(run))
    names = ["total", "Python only", *(name for name, _ in CALL_KINDS), "other"]
    print(f"where a trivial job's time goes, median ms of {rounds} (engine calls may overlap)")
    print(f"{'':<22}" + "".join(f"{side:>18}" for side in sides))
    for name in names:
        cells = []
        for side in sides:
            values = [run.get(name, 0.0) for run in seen[side]]
            cells.append(f"{statistics.median(values) * 1000:18.0f}")
        if any(cell.strip() != "0" for cell in cells):
            print(f"{name:<22}" + "".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three rounds per case")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--only", choices=tuple(TARGETS))
    parser.add_argument("--breakdown", action="store_true", help="where a job's time goes")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 3
    # What earlier benchmarks wrote (file_staging: gigabytes) is written back now, not while
    # a trivial job of a few hundred milliseconds is timed.
    os.sync()
    if args.breakdown:
        with tempfile.TemporaryDirectory(prefix="overhead-bench-") as tmp:
            bench = Bench(Path(tmp))
            breakdown(bench, args.rounds)
            bench.client.close()
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        return

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
