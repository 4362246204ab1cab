"""Host-side Pipe-mode throughput: a PipeChannel fed from local files, drained by ``cat``.

    .venv/bin/python benchmarks/pipe_host.py [--quick] [--files N] [--size MIB] [--epochs E]
        [--small-count N] [--small-kib K] [--busy]

Prints MB/s per configuration (raw, RecordIO, many small objects, gzip) and the feeder's CPU
seconds per GB (its thread's time: what it takes from the reader on a busy machine). The reader
is a separate process (``cat`` into /dev/null), as a training container would be; the files sit
in the page cache after the first epoch, so this measures the feeder, not the disk. No target:
benchmarks/pipe_throughput.py compares Pipe with File mode inside the container.

``--busy`` runs a Python thread that never waits (as a log pump digesting a chatty script
would) beside the feeder: files from HELPER_MIN up do not slow down, being spliced by the
helper process, which needs no GIL.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import tempfile
import threading
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


def feeder_cpu(channel: PipeChannel) -> float:
    """CPU seconds used so far by the channel's feeder thread (Linux: /proc task stat)."""
    thread = next(t for t in threading.enumerate() if t.name == f"pipe-feeder-{channel.name}")
    try:
        with open(f"/proc/self/task/{thread.native_id}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def busy_thread(stop: threading.Event) -> None:
    """Hold the GIL as a busy Python thread does, until ``stop``."""
    while not stop.is_set():
        sum(i * i for i in range(1000))


BUSY = threading.Event()  # set: run busy_thread beside each configuration


def run(
    label: str, source: LocalSource, epochs: int, *, record_io: bool = False, gz: bool = False
) -> None:
    stop = threading.Event()
    if BUSY.is_set():
        threading.Thread(target=busy_thread, args=(stop,), daemon=True).start()
    with tempfile.TemporaryDirectory() as data_dir:
        items = PipeItems.from_source(source, source.entries())
        channel = PipeChannel("train", Path(data_dir), items, record_io=record_io, gzip=gz)
        with channel:
            seconds = drain(channel, epochs)
            cpu = feeder_cpu(channel)
            written = channel.stats().bytes_written
    stop.set()
    rate = written / MIB / seconds
    print(
        f"{label:<34} {written / MIB:9.0f} MiB {seconds:7.2f} s {rate:8.0f} MiB/s "
        f"{cpu / (written / 1e9):8.2f} feeder CPU s/GB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (a few seconds)")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="MiB per file")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--small-count", type=int, default=20_000)
    parser.add_argument("--small-kib", type=int, default=4)
    parser.add_argument("--busy", action="store_true", help="a busy Python thread beside")
    args = parser.parse_args()
    if args.busy:
        BUSY.set()
    if args.quick:
        args.files, args.size, args.epochs, args.small_count = 2, 16, 2, 2000
    small_label = f"{args.small_count} x {args.small_kib} KiB objects"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        big = make_dataset(root / "big", args.files, args.size * MIB)
        small = make_dataset(root / "small", args.small_count, args.small_kib * 1024)
        packed = make_dataset(root / "gz", args.files, args.size * MIB, compress=True)
        run(f"raw, {args.files} x {args.size} MiB objects", big, args.epochs)
        run(f"RecordIO, {args.files} x {args.size} MiB", big, args.epochs, record_io=True)
        run(f"raw, {small_label}", small, args.epochs)
        run(f"RecordIO, {small_label}", small, args.epochs, record_io=True)
        run("gzip, raw", packed, args.epochs, gz=True)
        run("gzip, RecordIO (spooled)", packed, args.epochs, gz=True, record_io=True)


if __name__ == "__main__":
    main()
