"""File-mode download throughput: S3Source.download against two plain boto3 baselines.

Starts its own SeaweedFS (127.0.0.1 only) in a temp dir, uploads a data set of many small
objects and a few big ones, then times, on the same data and the same client settings:

    emulator          S3Source(...).download(entries, dest)   (s3transfer TransferManager)
    sequential        for each key: get_object + copy the body to a file
    parallel          ThreadPoolExecutor(16) over client.download_file

and prints MiB/s per data set and the emulator's speed-up over each baseline. Everything it
started or wrote is removed at the end.

    .venv/bin/python benchmarks/s3_download.py [--quick] [--small-count 500] [--big-count 4]
        [--repeat 3]

--quick is a short run (50 small objects, 2 big ones, one pass each) to check the script works;
its figures are not the ones to quote.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from boto3.s3.transfer import TransferConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.*

from emulator.storage.base import Entry
from emulator.storage.s3 import S3Source, s3_client
from tests.fixtures.s3 import S3Server, SeaweedFS, start_seaweedfs

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KiB, MiB = 1024, 1024 * 1024
BASELINE_THREADS = 16
COPY_CHUNK = 1 * MiB


def upload(server: S3Server, bucket: str, objects: dict[str, int]) -> None:
    """Upload ``{key: size}`` with random bytes (incompressible), in parallel."""
    client = server.client
    config = TransferConfig(max_concurrency=8)

    def put(item: tuple[str, int]) -> None:
        key, size = item
        path = Path(tempfile.mkstemp()[1])
        try:
            path.write_bytes(os.urandom(size))
            client.upload_file(str(path), bucket, key, Config=config)
        finally:
            path.unlink()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, objects.items()))


def sequential(client: S3Client, bucket: str, entries: list[Entry], dest: Path) -> None:
    for entry in entries:
        target = dest / entry.relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        body = client.get_object(Bucket=bucket, Key=entry.location)["Body"]
        with open(target, "wb") as out:
            for chunk in body.iter_chunks(COPY_CHUNK):
                out.write(chunk)


def parallel(client: S3Client, bucket: str, entries: list[Entry], dest: Path) -> None:
    def fetch(entry: Entry) -> None:
        target = dest / entry.relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, entry.location, str(target))

    with ThreadPoolExecutor(max_workers=BASELINE_THREADS) as pool:
        list(pool.map(fetch, entries))


def timed(run: Callable[[Path], None], scratch: Path, entries: list[Entry]) -> float:
    """Wall time of one run into a fresh directory; sizes are checked afterwards."""
    dest = Path(tempfile.mkdtemp(dir=scratch))
    os.sync()  # the previous run's dirty pages are not this run's cost
    started = time.perf_counter()
    run(dest)
    took = time.perf_counter() - started
    for entry in entries:
        assert (dest / entry.relative_path).stat().st_size == entry.size, entry
    shutil.rmtree(dest)
    return took


def bench(server: S3Server, bucket: str, prefix: str, scratch: Path, repeat: int) -> None:
    source = S3Source(f"s3://{bucket}/{prefix}", server.settings())
    entries = source.entries()
    client = s3_client(source.settings)  # the same client settings for every contender
    total = sum(e.size for e in entries) / MiB
    runs: dict[str, Callable[[Path], None]] = {
        "emulator": lambda dest: source.download(entries, dest),
        "sequential": lambda dest: sequential(client, bucket, entries, dest),
        "parallel": lambda dest: parallel(client, bucket, entries, dest),
    }
    seconds = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):  # interleaved, best of each: drifts hit every contender alike
        for name, run in runs.items():
            seconds[name] = min(seconds[name], timed(run, scratch, entries))
    print(f"\n{prefix or 'all'} {len(entries)} objects, {total:.0f} MiB (best of {repeat})")
    for name, took in seconds.items():
        print(f"  {name:<11} {total / took:8.1f} MiB/s  {took:6.2f} s")
    for name in ("sequential", "parallel"):
        print(f"  emulator / {name:<10} {seconds[name] / seconds['emulator']:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="50 small and 2 big objects, one pass each"
    )
    parser.add_argument("--small-count", type=int, default=None, help="default 500 (--quick: 50)")
    parser.add_argument("--small-kib", type=int, default=256)
    parser.add_argument("--big-count", type=int, default=None, help="default 4 (--quick: 2)")
    parser.add_argument("--big-mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=None, help="default 3 (--quick: 1)")
    args = parser.parse_args()
    # An explicit size wins over --quick's.
    if args.small_count is None:
        args.small_count = 50 if args.quick else 500
    if args.big_count is None:
        args.big_count = 2 if args.quick else 4
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3

    scratch = Path(tempfile.mkdtemp(prefix="s3-download-bench-"))
    weed: SeaweedFS | None = None
    try:
        (scratch / "weed").mkdir()
        weed = start_seaweedfs(scratch / "weed")
        server = weed.server
        os.environ.update(server.environ())  # credentials for the emulator's own client
        bucket = server.new_bucket("bench")
        small = {f"small/{i:05d}.bin": args.small_kib * KiB for i in range(args.small_count)}
        big = {f"big/{i}.bin": args.big_mib * MiB for i in range(args.big_count)}
        started = time.perf_counter()
        upload(server, bucket, small | big)
        print(f"uploaded {len(small) + len(big)} objects in {time.perf_counter() - started:.1f} s")
        print(f"SeaweedFS at {server.endpoint_url}; {os.cpu_count()} CPUs")
        for prefix in ("small/", "big/", ""):
            bench(server, bucket, prefix, scratch, args.repeat)
    finally:
        if weed is not None:
            weed.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
