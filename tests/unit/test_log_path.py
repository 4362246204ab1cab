"""The log path without an engine: a container's output frames to the log file (raw), then in
batches to the consumers (lines cut on \\n and \\r, at most 64 KiB), the metrics and the store
(every point), the user's sink (every line, however slow); what cannot be kept is said."""

from __future__ import annotations

import io
import random
import threading
import time
import tracemalloc
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest

from emulator.cli.main import LogEcho
from emulator.observe.joblogs import JobLogs
from emulator.observe.lines import MAX_LINE_BYTES, LineSplitter, decode_lines
from emulator.observe.logs import Lines, LinesLost, LogPump
from emulator.request.spec import MetricDefinition
from emulator.state.store import JobStore

MIB = 1024 * 1024


class FakeOutput:
    """A container's output: these frames, then the end (or, with ``hang``, nothing more
    until closed, as a stream the engine never ends)."""

    def __init__(self, frames: Iterable[tuple[int, bytes]], hang: bool = False) -> None:
        self._frames = frames
        self._hang = hang
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for frame in self._frames:
            if self.closed.is_set():
                return
            yield frame
        if self._hang:
            self.closed.wait()

    def close(self) -> None:
        self.closed.set()


class Collect:
    """A batch consumer keeping every line and group (or, with ``sizes_only``, each line's
    length), sleeping ``delay`` before each line."""

    def __init__(self, delay: float = 0.0, sizes_only: bool = False) -> None:
        self.groups: list[Lines] = []
        self.lines: list[str] = []
        self.sizes: list[int] = []
        self._delay = delay
        self._sizes_only = sizes_only

    def __call__(self, batch: Sequence[Lines]) -> None:
        for group in batch:
            if self._sizes_only:
                self.sizes += [len(line) for line in group.lines]
                continue
            self.groups.append(group)
            for line in group.lines:
                time.sleep(self._delay)
                self.lines.append(line)


def split_all(chunks: Iterable[bytes], max_line: int = MAX_LINE_BYTES) -> list[bytes]:
    splitter = LineSplitter(max_line)
    lines = [line for chunk in chunks for line in splitter.feed(chunk)]
    return lines + splitter.end()


def pump_through(frames: Iterable[tuple[int, bytes]], log: Path, **consumers: Collect) -> LogPump:
    pump = LogPump(FakeOutput(frames), log, dict(consumers))
    pump.start()
    pump.finish(stall_seconds=30)
    return pump


# -- where a line ends -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"a\nb\n", [b"a", b"b"]),
        (b"a\n\nb", [b"a", b"", b"b"]),  # blank lines are lines; the last one needs no \n
        (b"a\r\nb\r\n", [b"a", b"b"]),  # \r\n ends a line once
        (b"a\r\r\nb", [b"a", b"b"]),
        (b"\r 10%\r 20%\r 30%\n", [b" 10%", b" 20%", b" 30%"]),  # a progress bar's redraws
        (b"\r\r\rx\r", [b"x"]),  # a \r ends no empty line
        (b"a\r\n\r\nb", [b"a", b"", b"b"]),
        (b"", []),
    ],
)
def test_lines_end_on_a_newline_or_a_carriage_return(data: bytes, lines: list[bytes]) -> None:
    assert split_all([data]) == lines


def test_how_the_output_is_chunked_never_changes_the_lines() -> None:
    rng = random.Random(7)
    pieces = [b"loss=1\n", b"\r\n", b"\r", b"\n", b"tqdm 5%", b"", b"\xc3\xa9t\xc3\xa9", b"x" * 40]
    data = b"".join(rng.choice(pieces) for _ in range(3000))
    expected = split_all([data], max_line=16)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 400)))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert split_all(chunks, max_line=16) == expected
    assert split_all([bytes([byte]) for byte in data], max_line=16) == expected


def test_a_long_line_reaches_consumers_in_pieces_of_at_most_the_cap() -> None:
    line = "é" * 100_000  # 2 bytes each: a piece never ends inside a character
    pieces = split_all([line.encode() + b"\nnext\n"])
    assert all(len(piece) <= MAX_LINE_BYTES for piece in pieces)
    assert len(pieces) == 5
    assert "".join(decode_lines(pieces[:-1])) == line
    assert pieces[-1] == b"next"
    # exactly the cap, then its newline: one line, no empty piece after it
    assert split_all([b"x" * MAX_LINE_BYTES, b"\n"]) == [b"x" * MAX_LINE_BYTES]


def test_lines_are_decoded_as_utf8_with_bad_bytes_replaced() -> None:
    assert decode_lines([b"caf\xc3\xa9", b"bad \xff\xfe", b"cut \xe2\x82", b""]) == [
        "café",
        "bad \ufffd\ufffd",
        "cut \ufffd",
        "",
    ]


# -- the pump: file first, then batches ------------------------------------------------------


def test_the_log_file_keeps_the_raw_bytes_and_streams_keep_their_own_partial_lines(
    tmp_path: Path,
) -> None:
    frames = [(1, b"ab"), (2, b"err\r\n"), (1, b"cd\r"), (1, b"\nlast"), (2, b"no newline")]
    log = tmp_path / "algo-1.log"
    lines = Collect()
    pump = pump_through(frames, log, lines=lines)
    assert log.read_bytes() == b"aberr\r\ncd\r\nlastno newline"
    assert lines.lines == ["err", "abcd", "last", "no newline"]
    assert {(g.stream, tuple(g.lines)) for g in lines.groups} >= {(2, ("err",)), (1, ("abcd",))}
    assert pump.errors == [] and pump.lost == []


def test_a_tqdm_stream_gives_a_line_per_redraw_in_bounded_memory(tmp_path: Path) -> None:
    updates = 200_000
    frame = b"".join(
        f"\r{i % 100:3d}%|{'#' * (i % 100 // 10):<10}| {i}/{updates}".encode() for i in range(1000)
    )

    def frames() -> Iterator[tuple[int, bytes]]:
        for _ in range(updates // 1000):
            yield 2, frame
        yield 2, b"\n"

    sizes = Collect(sizes_only=True)
    tracemalloc.start()
    try:
        pump_through(frames(), tmp_path / "algo-1.log", sizes=sizes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(sizes.sizes) == updates  # one line per redraw, not one giant line
    assert max(sizes.sizes) < 40
    assert (tmp_path / "algo-1.log").stat().st_size == len(frame) * (updates // 1000) + 1
    assert peak < 24 * MIB  # a few batches, never the whole stream


def test_a_50_mb_line_without_a_newline_costs_memory_bounded_by_the_cap(tmp_path: Path) -> None:
    size = 50 * MIB
    chunk = b"x" * (64 * 1024 - 17)  # frames not aligned with the cap

    def frames() -> Iterator[tuple[int, bytes]]:
        sent = 0
        while sent < size:
            piece = chunk[: size - sent]
            sent += len(piece)
            yield 1, piece

    sizes = Collect(sizes_only=True)
    tracemalloc.start()
    try:
        pump_through(frames(), tmp_path / "algo-1.log", sizes=sizes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "algo-1.log").stat().st_size == size
    assert sum(sizes.sizes) == size  # nothing dropped: pieces of at most the cap
    assert max(sizes.sizes) == MAX_LINE_BYTES
    assert len(sizes.sizes) == -(-size // MAX_LINE_BYTES)
    assert peak < 16 * MIB  # a few batches at most, never the line (old code: ~7x its size)


def test_a_slow_consumer_holds_back_neither_the_reader_nor_the_other_consumers(
    tmp_path: Path,
) -> None:
    count = 2000
    frames = [(1, f"loss={i}\n".encode()) for i in range(count)]
    slow, fast = Collect(delay=0.002), Collect()
    pump = LogPump(FakeOutput(frames), tmp_path / "algo-1.log", {"slow": slow, "fast": fast})
    pump.start()
    pump.finish_reading(stall_seconds=30)
    # the reader is done long before the slow consumer (about 4 s of sleeps)
    assert (tmp_path / "algo-1.log").read_text().count("\n") == count
    assert len(slow.lines) < count
    pump.finish(stall_seconds=30)
    assert slow.lines == fast.lines == [f"loss={i}" for i in range(count)]


def test_a_failing_consumer_loses_its_lines_not_the_pump(tmp_path: Path) -> None:
    def broken(batch: Sequence[Lines]) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def partly(batch: Sequence[Lines]) -> None:
        raise LinesLost(ValueError("bad line"), 1)

    kept = Collect()
    frames = [(1, b"one\ntwo\n"), (1, b"three\n")]
    pump = LogPump(
        FakeOutput(frames), tmp_path / "a.log", {"sink": broken, "partly": partly, "kept": kept}
    )
    pump.start()
    pump.finish(stall_seconds=30)
    assert kept.lines == ["one", "two", "three"]
    assert (tmp_path / "a.log").read_bytes() == b"one\ntwo\nthree\n"
    [sink, part] = pump.errors
    assert sink.startswith("sink failed on 3 line(s), first with BrokenPipeError")
    assert part.startswith("partly failed on ") and "ValueError: bad line" in part
    assert pump.lost == []


def test_a_reader_that_gets_nothing_for_too_long_is_given_up_on_and_says_so(
    tmp_path: Path,
) -> None:
    output = FakeOutput([(1, b"before\n"), (1, b"partial")], hang=True)
    lines = Collect()
    pump = LogPump(output, tmp_path / "a.log", {"lines": lines})
    pump.start()
    pump.finish(stall_seconds=0.5)
    assert output.closed.is_set()
    assert lines.lines == ["before", "partial"]
    [lost] = pump.lost
    assert "the output of a was cut short: nothing came for" in lost
    assert "the reader was given up on" in lost
    assert lost in pump.errors


def test_output_the_log_file_cannot_take_is_counted_as_lost(tmp_path: Path) -> None:
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full")
    lines = Collect()
    pump = LogPump(FakeOutput([(1, b"a" * 100), (1, b"b\n")]), full, {"lines": lines})
    pump.start()
    pump.finish(stall_seconds=30)
    [lost] = pump.lost
    assert lost.startswith("102 byte(s) of the output of full could not be written to /dev/full")
    assert "No space left on device" in lost
    assert lines.lines == []


def test_close_stops_at_once_and_says_what_was_not_passed_on(tmp_path: Path) -> None:
    frames = [(1, b"line\n" * 1000) for _ in range(20)]
    slow = Collect(delay=0.01)
    pump = LogPump(FakeOutput(frames), tmp_path / "a.log", {"slow": slow})
    pump.start()
    pump.finish_reading(stall_seconds=30)
    started = time.monotonic()
    pump.abandon()
    assert time.monotonic() - started < 5
    [lost] = pump.lost
    assert lost == (
        "the output of a from byte 0 of its log file on may not have reached the metrics and "
        "the log output (interrupted)"
    )
    assert len(slow.lines) < 20_000
    assert (tmp_path / "a.log").stat().st_size == 100_000


def test_timestamps_are_when_the_lines_were_read(tmp_path: Path) -> None:
    def frames() -> Iterator[tuple[int, bytes]]:
        yield 1, b"first\n"
        time.sleep(0.3)
        yield 1, b"second\n"

    lines = Collect()
    before = time.time()
    pump_through(frames(), tmp_path / "a.log", lines=lines)
    stamps = {line: g.timestamp for g in lines.groups for line in g.lines}
    assert before <= stamps["first"] < stamps["second"] - 0.2 <= time.time()


# -- a job's logs: every point, every line ---------------------------------------------------


def new_job(tmp_path: Path) -> JobStore:
    store = JobStore(tmp_path / "home")
    store.create({"TrainingJobName": "job", "TrainingJobStatus": "InProgress"})
    return store


def test_every_metric_point_is_kept_and_the_final_value_is_the_last(tmp_path: Path) -> None:
    count = 20_000
    data = b"".join(f"step {i}: loss={i}\n".encode() for i in range(count))
    rng = random.Random(3)
    cuts = sorted(rng.sample(range(1, len(data)), 3000))
    frames = [(1, data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    store = new_job(tmp_path)
    seen: list[tuple[str, str]] = []
    logs = JobLogs(
        store,
        "job",
        [MetricDefinition("loss", r"loss=([0-9]+)"), MetricDefinition("none", r"never=(\d)")],
        lambda host, line: seen.append((host, line)),
    )
    logs.follow("algo-1", FakeOutput(frames))
    logs.wait()
    assert store.count_metrics("job") == count
    points = store.metrics("job")
    assert [p.value for p in points] == [float(i) for i in range(count)]
    assert {p.name for p in points} == {"loss"}
    [final] = logs.final_metric_data_list()
    assert (final["MetricName"], final["Value"]) == ("loss", float(count - 1))
    assert len(seen) == count and seen[-1] == ("algo-1", f"step {count - 1}: loss={count - 1}")
    assert store.log_path("job", "algo-1").read_bytes() == data
    assert logs.problems() == [] and logs.lost() == []


def test_a_sink_with_flush_is_flushed_once_per_batch_and_echo_writes_plain_lines(
    tmp_path: Path,
) -> None:
    class Counting(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1
            super().flush()

    stream = Counting()
    echo = LogEcho(stream, prefix_hosts=True)
    logs = JobLogs(new_job(tmp_path), "job", [], echo)
    text = "".join(f"[bold]{i}[/bold] \x1b[31mred\x1b[0m\n" for i in range(5000))
    logs.follow("algo-2", FakeOutput([(1, text.encode())]))
    logs.wait()
    expected = "".join(f"[algo-2] {line}\n" for line in text.splitlines())
    assert stream.getvalue() == expected  # as written: no markup, no wrapping
    assert 1 <= stream.flushes <= 5


def test_problems_are_noticed_once(tmp_path: Path) -> None:
    notices: list[str] = []

    def broken(host: str, line: str) -> None:
        raise OSError("sink down")

    logs = JobLogs(new_job(tmp_path), "job", [], broken, notices.append)
    logs.follow("algo-1", FakeOutput([(1, b"a\nb\n")]))
    logs.wait()
    logs.close()
    assert notices == [
        "Logs of algo-1: log output failed on 2 line(s), first with OSError: sink down"
    ]
    assert logs.lost() == []


def test_a_stream_that_breaks_is_reported(tmp_path: Path) -> None:
    def frames() -> Iterator[tuple[int, bytes]]:
        yield 1, b"kept\n"
        raise ConnectionResetError(104, "Connection reset by peer")

    lines = Collect()
    pump = pump_through(frames(), tmp_path / "a.log", lines=lines)
    assert lines.lines == ["kept"]
    assert pump.errors == [
        "the log stream ended early (ConnectionResetError: [Errno 104] Connection reset by "
        "peer): what followed is missing"
    ]
