"""The times of log lines: the index a job's JobLogs writes beside each host's log file (one
record per timed byte range, one write per batch), and the lines read back with their times by
byte offset, forward and backward: the same lines `emulator logs` shows."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from emulator import api
from emulator.observe.joblogs import JobLogs
from emulator.observe.linetimes import HEADER, RECORD, LineTimes, TimedLog, TimesWriter
from emulator.observe.logs import Lines
from emulator.state.store import JobStore


class Output:
    """A container's output frames, then the end."""

    def __init__(self, frames: Iterable[tuple[int, bytes]]) -> None:
        self._frames = frames
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for frame in self._frames:
            if self.closed.is_set():
                return
            yield frame

    def close(self) -> None:
        self.closed.set()


def job_store(tmp_path: Path) -> JobStore:
    store = JobStore(tmp_path / "home")
    store.create({"TrainingJobName": "job", "TrainingJobStatus": "InProgress"})
    return store


def follow(store: JobStore, hosts: dict[str, list[tuple[int, bytes]]]) -> JobLogs:
    logs = JobLogs(store, "job", [], lambda host, line: None)
    for host, frames in hosts.items():
        logs.follow(host, Output(frames))
    logs.wait()
    assert logs.problems() == []
    return logs


def timed_log(store: JobStore, host: str, ended: bool) -> TimedLog:
    times = LineTimes.read(store.times_path("job", host))
    assert times is not None
    return TimedLog(store.log_path("job", host), times, ended)


def cut(data: bytes, pieces: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), pieces - 1))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def messy_output(count: int) -> bytes:
    """Lines as containers write them: \\r\\n, progress bars redrawn with \\r, bad UTF-8, a
    line over the 64 KiB the consumers get at most, blank lines, and no newline at the end."""
    parts = []
    for i in range(count):
        if i % 97 == 0:
            parts.append(b"progress 10%\rprogress 50%\rprogress 100%\r\n")
        elif i % 89 == 0:
            parts.append(b"bad \xff\xfe bytes \xe2\x82\n")
        elif i % 83 == 0:
            parts.append(b"\n")
        elif i == count // 2:
            parts.append(b"long " + b"x" * 100_000 + b"\n")
        else:
            parts.append(f"step {i}: loss={1 / (i + 1):.5f} \u00e9\u00e8\n".encode())
    return b"".join(parts) + b"the last line, without a newline"


def test_lines_read_back_forward_and_backward_are_those_of_emulator_logs(tmp_path: Path) -> None:
    store = job_store(tmp_path)
    data = messy_output(5000)
    frames = [(1 + i % 2, piece) for i, piece in enumerate(cut(data, 700, seed=1))]
    follow(store, {"algo-1": frames})
    shown = list(api.logs("job", home=store.home))
    with timed_log(store, "algo-1", ended=True) as log:
        assert log.visible == log.size == len(data)
        forward = list(log.forward(0, log.visible))
        backward = list(log.backward(log.visible, 0))
    assert [event.message for event in forward] == shown
    assert backward[::-1] == forward
    assert [e.start for e in forward[1:]] == [e.end for e in forward[:-1]]
    stamps = [event.timestamp for event in forward]
    assert stamps == sorted(stamps)


def test_a_running_stream_shows_its_timed_complete_lines_only(tmp_path: Path) -> None:
    store = job_store(tmp_path)
    follow(store, {"algo-1": [(1, b"one\ntwo\nthr"), (1, b"ee")]})
    with timed_log(store, "algo-1", ended=False) as log:
        assert [e.message for e in log.forward(0, log.visible)] == ["one", "two"]
        assert log.visible == len(b"one\ntwo\n")
    with timed_log(store, "algo-1", ended=True) as log:  # the job is over: "three" is a line
        assert [e.message for e in log.forward(0, log.visible)] == ["one", "two", "three"]


def test_the_index_has_a_record_per_timed_range_not_per_line(tmp_path: Path) -> None:
    store = job_store(tmp_path)
    lines = b"".join(f"line {i}\n".encode() for i in range(50_000))
    follow(store, {"algo-1": [(1, piece) for piece in cut(lines, 20, seed=2)]})
    size = store.times_path("job", "algo-1").stat().st_size
    assert (size - HEADER.size) % RECORD.size == 0
    assert 1 <= (size - HEADER.size) // RECORD.size <= 20


def test_two_hosts_have_an_index_each_created_when_following_began(tmp_path: Path) -> None:
    store = job_store(tmp_path)
    follow(store, {"algo-1": [(1, b"a\n")], "algo-2": [(2, b"b\n"), (1, b"c\n")]})
    for host, expected in (("algo-1", ["a"]), ("algo-2", ["b", "c"])):
        with timed_log(store, host, ended=False) as log:
            events = list(log.forward(0, log.visible))
            assert [e.message for e in events] == expected
            assert all(e.timestamp >= log.times.created_ms for e in events)


def write(log: Path, writer: TimesWriter, data: bytes, at: float) -> None:
    """Append ``data`` to the log file and time it as read at ``at`` (seconds)."""
    with open(log, "ab") as file:
        file.write(data)
    writer([Lines(1, at, data.decode().splitlines(), log.stat().st_size)])


def test_times_are_found_by_binary_search_and_never_go_back(tmp_path: Path) -> None:
    log, index = tmp_path / "algo-1.log", tmp_path / "algo-1.times"
    writer = TimesWriter(index, created=100.0)
    write(log, writer, b"a\nb\n", 101.0)
    write(log, writer, b"c\n", 100.5)  # the clock went back: kept at 101 s
    write(log, writer, b"d\ne", 103.0)
    write(log, writer, b"\n", 104.0)
    times = LineTimes.read(index)
    assert times is not None
    assert (times.created_ms, times.count) == (100_000, 4)
    with TimedLog(log, times, ended=False) as timed:
        events = [(e.message, e.timestamp // 1000) for e in timed.forward(0, timed.visible)]
        assert events == [("a", 101), ("b", 101), ("c", 101), ("d", 103), ("e", 104)]
        assert timed.first_from(101_000) == 0  # inclusive
        assert timed.first_from(101_001) == timed.first_from(103_000) == 6  # "d"
        assert timed.first_from(105_000) == timed.visible  # nothing that late
        assert timed.stop_before(103_000) == 6  # exclusive: "a".."c"
        assert timed.stop_before(101_000) == 0
        assert timed.stop_before(None) == timed.visible
        backward = [e.message for e in timed.backward(timed.stop_before(104_000), 2)]
        assert backward == ["d", "c", "b"]
        assert [timed.is_boundary(offset) for offset in (0, 1, 2, 3, 4)] == [
            True,
            False,
            True,
            False,
            True,
        ]


def test_ranges_of_a_batch_read_in_the_same_millisecond_make_one_record(tmp_path: Path) -> None:
    index = tmp_path / "algo-1.times"
    TimesWriter(index, created=1.0)([Lines(1, 2.0, ["a"], 2), Lines(2, 2.0, ["b"], 4)])
    times = LineTimes.read(index)
    assert times is not None and [times.record(i) for i in range(times.count)] == [(4, 2000)]


def test_following_again_appends_to_the_index_and_a_torn_record_is_dropped(
    tmp_path: Path,
) -> None:
    log, index = tmp_path / "algo-1.log", tmp_path / "algo-1.times"
    write(log, TimesWriter(index, created=10.0), b"a\n", 11.0)
    with open(index, "ab") as file:
        file.write(b"\x01\x02\x03")  # a crash in the middle of a write
    again = TimesWriter(index, created=50.0)
    assert again.created_ms == 10_000  # the stream keeps its creation time
    write(log, again, b"b\n", 12.0)
    times = LineTimes.read(index)
    assert times is not None
    assert [times.record(i) for i in range(times.count)] == [(2, 11_000), (4, 12_000)]


def test_a_file_that_is_not_an_index_is_started_again(tmp_path: Path) -> None:
    index = tmp_path / "algo-1.times"
    index.write_bytes(b"something else entirely")
    assert LineTimes.read(index) is None
    TimesWriter(index, created=7.0)
    times = LineTimes.read(index)
    assert times is not None and (times.created_ms, times.count) == (7000, 0)


def test_an_index_that_cannot_be_written_fails_the_batches_not_the_job(tmp_path: Path) -> None:
    writer = TimesWriter(tmp_path / "missing" / "algo-1.times")
    with pytest.raises(OSError):
        writer([Lines(1, 1.0, ["a"], 2)])


def test_a_large_index_is_read_in_place(tmp_path: Path) -> None:
    log, index = tmp_path / "algo-1.log", tmp_path / "algo-1.times"
    writer = TimesWriter(index, created=0.0)
    count = 10_000  # 160 KB of records: mapped, not read whole
    log.write_bytes(b"".join(f"{i:07d}\n".encode() for i in range(count)))
    writer([Lines(1, i + 1.0, [], (i + 1) * 8) for i in range(count)])
    times = LineTimes.read(index)
    assert times is not None and times.count == count
    with TimedLog(log, times, ended=False) as timed:
        start = timed.first_from(5000_000)
        first = next(timed.forward(start, timed.visible))
        assert (first.message, first.timestamp) == ("0004999", 5000_000)
        last = next(timed.backward(timed.stop_before(7000_000), 0))
        assert (last.message, last.timestamp) == ("0006998", 6999_000)
