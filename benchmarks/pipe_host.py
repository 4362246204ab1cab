"""Host-side Pipe-mode throughput: a PipeChannel fed from local files, drained by ``cat``.

    .venv/bin/python benchmarks/pipe_host.py [--files N] [--size MIB] [--epochs E]

Prints MB/s per configuration (raw, RecordIO, many small objects, gzip). The reader is a
separate process (``cat`` into /dev/null), as a training container would be; the files sit in
the page cache after the first epoch, so this measures the feeder, not the disk.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import tempfile
import time
from pathlib import Path

from emulator.stage.pipe.feeder import PipeChannel
from emulator.stage.pipe.items import PipeItems
from emulator.storage.local import LocalSource

MIB = 1024 * 1024


def make_dataset(root: Path, count: int, size: int, compress: bool = False) -> LocalSource:
    root.mkdir(parents=True)
    block = os.urandom(min(size, MIB))
    for index in range(count):
        data = (block * (size // len(block) + 1))[:size]
        if compress:
            data = gzip.compress(data, compresslevel=1)
        (root / f"part-{index:06}").write_bytes(data)
    return LocalSource(str(root))


def drain(channel: PipeChannel, epochs: int) -> float:
    """Seconds for a `cat` reader to read ``epochs`` epochs."""
    paths = " ".join(str(channel.fifo_path(e)) for e in range(epochs))
    started = time.perf_counter()
    subprocess.run(["sh", "-c", f"cat {paths} > /dev/null"], check=True)
    return time.perf_counter() - started


def run(
    label: str, source: LocalSource, epochs: int, *, record_io: bool = False, gz: bool = False
) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        items = PipeItems.from_source(source, source.entries())
        channel = PipeChannel("train", Path(data_dir), items, record_io=record_io, gzip=gz)
        with channel:
            seconds = drain(channel, epochs)
            written = channel.stats().bytes_written
    rate = written / MIB / seconds
    print(f"{label:<34} {written / MIB:9.0f} MiB {seconds:7.2f} s {rate:8.0f} MiB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="MiB per file")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        big = make_dataset(root / "big", args.files, args.size * MIB)
        small = make_dataset(root / "small", 20000, 1000)
        packed = make_dataset(root / "gz", args.files, args.size * MIB, compress=True)
        run("raw, large objects", big, args.epochs)
        run("RecordIO, large objects", big, args.epochs, record_io=True)
        run("raw, 20000 x 1 KB objects", small, args.epochs)
        run("RecordIO, 20000 x 1 KB objects", small, args.epochs, record_io=True)
        run("gzip, raw", packed, args.epochs, gz=True)
        run("gzip, RecordIO (spooled)", packed, args.epochs, gz=True, record_io=True)


if __name__ == "__main__":
    main()
