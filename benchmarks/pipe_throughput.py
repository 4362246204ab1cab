"""Pipe-mode throughput seen INSIDE the container, against the same reader on File-mode files.

    .venv/bin/python benchmarks/pipe_throughput.py [--quick] [--runs N] [--passes P]
        [--large-count N] [--large-mib M] [--small-count N] [--small-kib K] [--only large|small]
        [--pin same|apart]

Defaults: 8 x 256 MiB and 20,000 x 4 KiB objects, 3 runs of 7 passes (about 2 minutes).

Fairness: one training job per dataset and run, with three channels over the SAME local
objects: ``file`` (File mode: copied before the container starts), ``raw`` (Pipe) and ``rio``
(Pipe, RecordIO). One reader program (python, ``readinto`` a 1 MiB buffer, no per-byte work)
reads them in turn, pass after pass: a File pass reads every file of the channel (the listing is
not timed, each open is), a Pipe pass reads one epoch (FIFO ``<channel>_<pass>``). Both sides
read from a warm page cache (the File copy was just written, and is synced before the first
pass so that no writeback runs during the passes; the Pipe feeder reads the objects the copy
read): pass 0 of every channel is a warm-up, not counted. The order of the channels flips every
pass, so that drift in the machine's load hits both modes alike.

A case's ratio in a run is the median over the passes of pipe MB/s / file MB/s of the same pass
(bytes the reader got, RecordIO framing included). Target: >= 0.8x in every run, for large raw
and RecordIO objects and for many small ones. Data is generated in a temp dir, removed at exit.

The kernel places the container's reader and the emulator's splice helper (big files) on CPUs
as it likes, per job. ``--pin same`` keeps both on CPU 0, ``--pin apart`` the helper on CPU 0
and the reader on CPU 1 (set as they appear; needs the right to set the container process's
affinity, as root has), to measure each placement on its own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emulator import RunOptions, run_training_job

IMAGE = "sagemaker-emulator/python:latest"
MIB = 1024 * 1024
TARGET = 0.8  # pipe/file, every case, every run
PIPES = {"raw": "", "rio": "RecordIO"}  # Pipe channels and their RecordWrapperType

# The reader, run by `python3 -c` from the environment (an entrypoint string holds at most 256
# characters, an environment value 512: the program is split over R1 and R2).
READER = (
    """\
import os,time
D='/opt/ml/input/data/'
F=sorted(os.path.join(d,f) for d,_,fs in os.walk(D+'file') for f in fs)
v=memoryview(bytearray(1<<20))
def rd(k,i):
 n=0;t=time.perf_counter()
 for p in F if k=='file' else [D+k+'_'+str(i)]:
  with open(p,'rb',buffering=0) as s:
   while r:=s.readinto(v):n+=r
 print('BENCH',k,i,n,time.perf_counter()-t,flush=True)
""",
    """\
os.sync()
K=['file']+os.environ['PIPES'].split()
for i in range(int(os.environ['PASSES'])+1):
 for k in K[::-1] if i%2 else K:rd(k,i)
""",
)
ENTRYPOINT = ["python3", "-c", "import os;exec(os.environ['R1']+os.environ['R2'])"]


def make_dataset(root: Path, count: int, size: int) -> Path:
    """``count`` files of ``size`` bytes (distinct, incompressible), in a fresh directory."""
    root.mkdir(parents=True)
    block = os.urandom(min(size, 4 * MIB) or 1)
    for index in range(count):
        with open(root / f"part-{index:06}", "wb") as out:
            out.write(index.to_bytes(8, "little")[:size])
            left = size - min(size, 8)
            while left:
                piece = block[: min(left, len(block))]
                out.write(piece)
                left -= len(piece)
    return root


def request(name: str, data: Path, output: Path, passes: int) -> dict[str, Any]:
    source = {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": str(data)}}
    channels: list[dict[str, Any]] = [
        {"ChannelName": "file", "InputMode": "File", "DataSource": source}
    ]
    for channel, wrapper in PIPES.items():
        channels.append({"ChannelName": channel, "InputMode": "Pipe", "DataSource": source})
        if wrapper:
            channels[-1]["RecordWrapperType"] = wrapper
    return {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/Bench",
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ENTRYPOINT,
        },
        "Environment": {
            "R1": READER[0],
            "R2": READER[1],
            "PIPES": " ".join(PIPES),
            "PASSES": str(passes),
        },
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": str(output)},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


# --pin: the CPU of the splice helper and the CPU of the container's reader
PLACEMENTS = {"same": (0, 0), "apart": (0, 1)}
HELPER_MARK = b"recv_fds"  # in the splice helper's command line (emulator.stage.pipe.splicer)
READER_MARK = ENTRYPOINT[-1].encode()


def processes() -> Iterator[tuple[int, bytes]]:
    """(pid, command line) of every process this host shows."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    yield int(entry.name), cmdline.read()
            except OSError:  # ended meanwhile
                continue


class Pinner(threading.Thread):
    """Moves the splice helper and the reader to their --pin CPUs as they appear."""

    def __init__(self, helper_cpu: int, reader_cpu: int) -> None:
        super().__init__(name="pinner", daemon=True)
        self.cpus = {HELPER_MARK: helper_cpu, READER_MARK: reader_cpu}
        self.pinned: set[int] = set()
        self.refused: str | None = None

    def run(self) -> None:
        while True:
            time.sleep(0.1)
            for pid, cmdline in processes():
                cpu = next((c for mark, c in self.cpus.items() if mark in cmdline), None)
                if cpu is None or pid in self.pinned:
                    continue
                try:
                    os.sched_setaffinity(pid, {cpu})
                except ProcessLookupError:
                    continue
                except PermissionError as exc:
                    self.refused = f"cannot pin process {pid}: {exc} (run as root)"
                    return
                self.pinned.add(pid)


# MB/s per channel, one list entry per counted pass (pass 0 dropped)
Rates = dict[str, list[float]]


class Bench:
    def __init__(self, root: Path, passes: int) -> None:
        self.root = root
        self.passes = passes
        self.jobs = 0

    def run_job(self, data: Path) -> tuple[Rates, float]:
        """One job reading ``data`` through every channel; its rates and its seconds."""
        self.jobs += 1
        lines: list[str] = []
        options = RunOptions(
            home=self.root / "home",
            work_root=self.root / "work",
            log_sink=lambda host, line: lines.append(line),
        )
        name = f"bench-{os.getpid()}-{self.jobs}"
        started = time.perf_counter()
        spec = request(name, data, self.root / "output", self.passes)
        record = run_training_job(spec, options)
        seconds = time.perf_counter() - started
        shutil.rmtree(self.root / "output" / name, ignore_errors=True)
        if record["TrainingJobStatus"] != "Completed":
            sys.exit(f"bench job {name} failed: {record.get('FailureReason')}\n" + "\n".join(lines))
        rates: Rates = {channel: [] for channel in ("file", *PIPES)}
        for line in lines:
            if line.startswith("BENCH "):
                _, channel, index, count, elapsed = line.split()
                if int(index) > 0:
                    rates[channel].append(int(count) / 1e6 / float(elapsed))
        if any(len(found) != self.passes for found in rates.values()):
            sys.exit(f"bench job {name}: BENCH lines missing:\n" + "\n".join(lines))
        return rates, seconds


def ratio(rates: Rates, channel: str) -> float:
    """The median over passes of the pipe/file ratio of the same pass."""
    pairs = zip(rates[channel], rates["file"], strict=True)
    return statistics.median(pipe / file for pipe, file in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (about 20 seconds)")
    parser.add_argument("--runs", type=int, default=3, help="each case measured in N jobs")
    parser.add_argument("--passes", type=int, default=7, help="counted passes per channel")
    parser.add_argument("--large-count", type=int, default=8)
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--small-count", type=int, default=20_000)
    parser.add_argument("--small-kib", type=int, default=4)
    parser.add_argument("--only", choices=("large", "small"), help="one dataset only")
    parser.add_argument(
        "--pin", choices=tuple(PLACEMENTS), help="place the reader and the splice helper (above)"
    )
    args = parser.parse_args()
    if args.quick:
        args.large_count, args.large_mib, args.small_count = 2, 64, 2000
        args.runs, args.passes = 1, 3

    load = os.getloadavg()[0]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pipe-bench-") as tmp:
        root = Path(tmp)
        (root / "work").mkdir()
        shapes = {
            "large": (args.large_count, args.large_mib * MIB, f"{args.large_mib} MiB"),
            "small": (args.small_count, args.small_kib * 1024, f"{args.small_kib} KiB"),
        }
        datasets = {
            f"{count} x {size_label}": make_dataset(root / name, count, size)
            for name, (count, size, size_label) in shapes.items()
            if args.only in (None, name)
        }
        # The data just written (and what earlier benchmarks left to write back) goes to disk
        # now, not during the first job's passes.
        os.sync()
        bench = Bench(root, args.passes)
        pinner = Pinner(*PLACEMENTS[args.pin]) if args.pin else None
        placement = ""
        if pinner is not None:
            pinner.start()
            placement = f"; pinned {args.pin}: helper, reader on CPUs {PLACEMENTS[args.pin]}"
        print(
            f"Read inside the container (python, 1 MiB readinto); per run, the median over "
            f"{args.passes} passes of pipe/file; target >= {TARGET}x in each of {args.runs} runs"
            + placement
        )
        print(
            f"{'case':<26} {'pipe MB/s':>9} {'file MB/s':>9}  {'pipe/file per run':<24} "
            f"{'all runs':<8} {'job s':>6}"
        )
        verdicts = []
        for label, data in datasets.items():
            results = [bench.run_job(data) for _ in range(args.runs)]
            if pinner is not None and pinner.refused:
                sys.exit(pinner.refused)
            for channel, wrapper in (("raw", "raw"), ("rio", "RecordIO")):
                ratios = [ratio(rates, channel) for rates, _ in results]
                pipe = statistics.median(r for rates, _ in results for r in rates[channel])
                file = statistics.median(r for rates, _ in results for r in rates["file"])
                met = all(value >= TARGET for value in ratios)
                verdicts.append(met)
                runs = " ".join(f"{value:.2f}x" for value in ratios)
                jobs = statistics.median(seconds for _, seconds in results)
                print(
                    f"{wrapper + ', ' + label:<26} {pipe:9.0f} {file:9.0f}  {runs:<24} "
                    f"{'met' if met else 'NO':<8} {jobs:6.1f}",
                    flush=True,
                )
    print(
        f"target pipe >= {TARGET}x file in every run: "
        f"{'met' if all(verdicts) else 'NO'} ({sum(verdicts)} of {len(verdicts)} cases)"
    )
    after = os.getloadavg()[0]
    print(
        f"{time.perf_counter() - began:.0f} s; load average before/after: {load:.1f}/{after:.1f} "
        f"on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
