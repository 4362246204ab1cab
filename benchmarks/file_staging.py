"""File-mode staging of a local channel, against ``cp -r`` of the same directory.

    .venv/bin/python benchmarks/file_staging.py [--quick] [--rounds R] [--rss-gib G]
        [--only large|small|rss]

The staging step itself is timed: ``ChannelStager.stage`` of one host, which copies the
channel into the host's ``input/data/<channel>`` and makes the copy writable for any USER of
the image (what the job's Downloading stage does). The listing (``resolve_channels``, the
job's preflight) is timed apart and printed, not counted. The baseline is ``cp -r`` of the same
directory to a fresh place on the same disk. Both sides read a warm page cache (the data was
just read again before each side) and neither syncs to disk.

    large   8 files of 128 MiB (1 GiB)     target: staging >= 0.9x cp's speed
    small   20,000 files of 4 KiB          target: staging >= 0.8x cp's speed
    rss     peak RSS of this process (the emulator's stager, in-process) while staging
            10 GiB of sparse files (--quick: 1 GiB)      target: <= 150 MB

R rounds (default 5; --quick: 2), each timing both sides back to back, cp and the stager
taking turns to go first. The ratio is the median over the rounds of cp's time over the
stager's in the same round (> 1: the stager is faster): this VM's disk has slow spells of
seconds, and a paired ratio keeps one from deciding the verdict (a best-of-R of each side
let a single lucky cp round do that). Speeds (MB/s) and times are each side's best.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from emulator.plan.layout import HostLayout
from emulator.progress import NO_PROGRESS
from emulator.request.validation import parse_request
from emulator.stage.stager import ChannelStager, resolve_channels

MIB = 1024 * 1024
GIB = 1024 * MIB
TARGETS = {"large": 0.9, "small": 0.8}  # stager speed / cp speed, at least
TARGET_RSS_MB = 150.0


def make_dataset(root: Path, count: int, size: int, *, sparse: bool = False) -> Path:
    """``count`` files of ``size`` bytes in ``root``: random bytes, or holes (sparse)."""
    root.mkdir(parents=True)
    block = os.urandom(min(size, 4 * MIB))
    for index in range(count):
        path = root / f"part-{index:05}"
        if sparse:
            with open(path, "wb") as out:
                out.truncate(size)
            continue
        with open(path, "wb") as out:
            out.write(index.to_bytes(8, "little"))
            left = size - 8
            while left:
                piece = block[: min(left, len(block))]
                out.write(piece)
                left -= len(piece)
    return root


def request(data: Path, output: Path) -> dict[str, Any]:
    return {
        "TrainingJobName": "staging-bench",
        "RoleArn": "arn:aws:iam::123456789012:role/Bench",
        "AlgorithmSpecification": {
            "TrainingImage": "sagemaker-emulator/busybox:latest",
            "TrainingInputMode": "File",
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": str(data)}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": str(output)},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def stage(data: Path, work: Path) -> tuple[float, float]:
    """(listing seconds, staging seconds) of the channel at ``data`` for one host in ``work``."""
    spec = parse_request(request(data, work))
    began = time.perf_counter()
    channels = resolve_channels(spec)
    listed = time.perf_counter() - began
    host = spec.resources.hosts()[0]
    layout = HostLayout(work / host.name, host)
    layout.create(spec)
    with ChannelStager(spec, channels, work, NO_PROGRESS, lambda message: None) as stager:
        began = time.perf_counter()
        stager.stage(layout)
        staged = time.perf_counter() - began
    expected = sum(entry.size for entry in channels["train"].entries)
    copied = sum(p.stat().st_size for p in layout.channel_dir("train").rglob("*") if p.is_file())
    if copied != expected:
        raise SystemExit(f"staged {copied} bytes, {expected} expected")
    return listed, staged


def cp(data: Path, target: Path) -> float:
    began = time.perf_counter()
    subprocess.run(["cp", "-r", str(data), str(target)], check=True)
    return time.perf_counter() - began


def read_all(data: Path) -> None:
    """Read every file once: both sides then read from a warm page cache."""
    for path in sorted(data.iterdir()):
        with open(path, "rb") as stream:
            while stream.read(8 * MIB):
                pass


def compare(root: Path, label: str, data: Path, rounds: int) -> tuple[float, str]:
    """The stager's speed over cp's (the median of each round's) and the line to print."""
    cps: list[float] = []
    stagings: list[float] = []
    listings: list[float] = []
    for index in range(rounds):
        copy, work = root / f"cp-{index}", root / f"work-{index}"
        sides: list[Callable[[], None]] = [
            partial(_cp_into, data, copy, cps),
            partial(_stage_into, data, work, listings, stagings),
        ]
        for side in sides if index % 2 == 0 else sides[::-1]:
            os.sync()  # the other side's writes are not flushed on this one's time
            # This machine's page cache does not keep what was read a minute ago (the VM
            # hands idle pages back): read the data again right before each side.
            read_all(data)
            side()
    # Removed only now: deleting 20,000 files keeps the file system's journal busy for
    # seconds (discards), and a round that ran meanwhile would measure that, not the copy.
    for index in range(rounds):
        shutil.rmtree(root / f"cp-{index}")
        shutil.rmtree(root / f"work-{index}")
    ratios = [copied / staged for copied, staged in zip(cps, stagings, strict=True)]
    ratio = statistics.median(ratios)
    size = sum(p.stat().st_size for p in data.iterdir())
    line = (
        f"{label:<22} {size / MIB / min(cps):8.0f} {size / MIB / min(stagings):8.0f}   "
        f"{min(cps):6.2f} {min(stagings):6.2f} {statistics.median(listings):7.2f}   "
        f"{ratio:5.2f}x (rounds {' '.join(f'{r:.2f}' for r in ratios)})"
    )
    return ratio, line


def _cp_into(data: Path, copy: Path, cps: list[float]) -> None:
    cps.append(cp(data, copy))


def _stage_into(data: Path, work: Path, listings: list[float], stagings: list[float]) -> None:
    work.mkdir()
    listed, staged = stage(data, work)
    listings.append(listed)
    stagings.append(staged)


def reset_peak_rss() -> None:
    """Reset this process's VmHWM (Linux: ``5`` to /proc/self/clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def staging_rss(root: Path, gib: int) -> tuple[float, float]:
    """(peak RSS MB, seconds) of this process while staging ``gib`` GiB of sparse files."""
    data = make_dataset(root / "sparse", max(1, gib), GIB, sparse=True)
    work = root / "work-rss"
    work.mkdir()
    reset_peak_rss()
    began = time.perf_counter()
    stage(data, work)
    seconds = time.perf_counter() - began
    rss = peak_rss_mb()
    shutil.rmtree(work)
    return rss, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two rounds, 1 GiB for the RSS")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each timing both sides")
    parser.add_argument("--rss-gib", type=int, default=10, help="GiB staged for the peak RSS")
    parser.add_argument("--only", choices=("large", "small", "rss"))
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.rss_gib = 2, 1

    load = os.getloadavg()[0]
    began = time.perf_counter()
    verdicts: list[bool] = []
    with tempfile.TemporaryDirectory(prefix="staging-bench-") as tmp:
        root = Path(tmp)
        shapes = {"large": (8, 128 * MIB, "8 x 128 MiB"), "small": (20_000, 4096, "20,000 x 4 KiB")}
        print(f"File-mode staging of a local channel vs cp -r, {args.rounds} rounds")
        print(
            f"{'case':<22} {'cp MB/s':>8} {'stage':>8}   {'cp s':>6} {'stage':>6} {'list s':>7}"
            "   stage speed / cp speed"
        )
        for name, (count, size, label) in shapes.items():
            if args.only not in (None, name):
                continue
            data = make_dataset(root / name, count, size)
            ratio, line = compare(root, label, data, args.rounds)
            met = ratio >= TARGETS[name]
            verdicts.append(met)
            print(line, flush=True)
            print(f"target: staging >= {TARGETS[name]}x cp's speed: {'met' if met else 'NO'}")
            shutil.rmtree(data)
        if args.only in (None, "rss"):
            rss, seconds = staging_rss(root, args.rss_gib)
            met = rss <= TARGET_RSS_MB
            verdicts.append(met)
            print(
                f"target: peak RSS staging {args.rss_gib} GiB (sparse files) <= "
                f"{TARGET_RSS_MB:.0f} MB: {'met' if met else 'NO'} ({rss:.0f} MB, {seconds:.1f} s)"
            )
    after = os.getloadavg()[0]
    print(
        f"{'all targets met' if all(verdicts) else 'NOT all targets met'}; "
        f"{time.perf_counter() - began:.0f} s; load average before/after: {load:.1f}/{after:.1f} "
        f"on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
