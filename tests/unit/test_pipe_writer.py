"""How the Pipe feeder moves bytes: splice for big regular files, small files read straight into
its write buffer, RecordIO framing around both, spooling, and the pipe buffer size."""

from __future__ import annotations

import errno
import fcntl
import gzip
import io
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from emulator.stage.pipe import feeder
from emulator.stage.pipe.feeder import PipeChannel
from emulator.stage.pipe.items import CHUNK_SIZE, PipeItem, PipeItems, Shard
from emulator.stage.pipe.writer import PIPE_MAX, SPLICE_MIN, pipe_max_size
from tests.fixtures.pipe import (
    decode,
    in_key_order,
    items_of,
    make_local_source,
    read_epoch,
    wait_for,
)

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_feeder_thread_left")]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def spliced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts moved by every os.splice call (the real one) during the test."""
    moves: list[int] = []
    real_splice = os.splice

    def counting_splice(src: int, dst: int, count: int, **kwargs: Any) -> int:
        moved = real_splice(src, dst, count, **kwargs)
        moves.append(moved)
        return moved

    monkeypatch.setattr(os, "splice", counting_splice)
    return moves


def test_large_local_files_are_spliced_small_ones_coalesced(
    tmp_path: Path, data_dir: Path, spliced: list[int]
) -> None:
    files = {f"small{n:03}": os.urandom(100 + n) for n in range(200)}
    files["big"] = os.urandom(SPLICE_MIN * 3 + 5)
    source = make_local_source(tmp_path / "src", files)
    for record_io in (False, True):
        spliced.clear()
        with PipeChannel("t", data_dir, items_of(source), record_io=record_io):
            data = read_epoch(data_dir / "t_0")
        if record_io:
            assert [p for _, p in decode(data)] == [files[name] for name in sorted(files)]
        else:
            assert data == in_key_order(files)
        assert sum(spliced) == len(files["big"])  # only the big one


def test_where_splice_is_refused_files_are_read_and_written(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def refuse(*args: object, **kwargs: object) -> int:
        calls.append(args)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "splice", refuse)
    files = {"a": os.urandom(3 * CHUNK_SIZE + 1), "b": os.urandom(SPLICE_MIN + 2)}
    source = make_local_source(tmp_path / "src", files)
    with PipeChannel("t", data_dir, items_of(source), record_io=True) as channel:
        for epoch in range(2):
            records = decode(read_epoch(data_dir / f"t_{epoch}"))
            assert [p for _, p in records] == [files["a"], files["b"]]
    assert channel.error is None
    assert len(calls) == 2  # tried once per epoch, then pread and write


def test_a_source_stream_over_a_regular_file_is_sent_by_offset(
    tmp_path: Path, data_dir: Path, spliced: list[int]
) -> None:
    """Streams of other Sources (a ManifestFile over local files) that are files, and streams
    that are not (S3 bodies), read from their current position."""
    big = os.urandom(2 * CHUNK_SIZE + 3)
    (tmp_path / "big").write_bytes(b"skipped" + big)

    def at_offset() -> BinaryIO:
        stream = open(tmp_path / "big", "rb")  # noqa: SIM115 (the feeder closes it)
        stream.seek(7)
        return stream

    items = [
        PipeItem("file", at_offset, len(big)),
        PipeItem("memory", lambda: io.BytesIO(b"not a file"), 10),
    ]
    pipe_items = PipeItems(len(items), lambda index: (items[index],))
    for record_io in (False, True):
        spliced.clear()
        with PipeChannel("t", data_dir, pipe_items, record_io=record_io) as channel:
            data = read_epoch(data_dir / "t_0")
        assert channel.error is None
        assert sum(spliced) == len(big)
        if record_io:
            assert [p for _, p in decode(data)] == [big, b"not a file"]
        else:
            assert data == big + b"not a file"


def test_a_local_file_replaced_by_a_fifo_fails_the_channel_without_blocking(
    tmp_path: Path, data_dir: Path
) -> None:
    source = make_local_source(tmp_path / "src", {"a": b"1234"})
    entries = source.entries()
    (tmp_path / "src" / "a").unlink()
    os.mkfifo(tmp_path / "src" / "a")
    with PipeChannel("t", data_dir, PipeItems.from_source(source, entries)) as channel:
        assert read_epoch(data_dir / "t_0") == b""
        wait_for(lambda: channel.error is not None)
    assert "is not a regular file" in str(channel.error)


def test_a_recordio_object_that_grew_fails_before_its_header(
    tmp_path: Path, data_dir: Path
) -> None:
    source = make_local_source(tmp_path / "src", {"a": b"1234", "b": b"5678"})
    entries = source.entries()
    (tmp_path / "src" / "b").write_bytes(b"56789")
    with PipeChannel("t", data_dir, PipeItems.from_source(source, entries), record_io=True) as ch:
        data = read_epoch(data_dir / "t_0")
        wait_for(lambda: ch.error is not None)
    assert decode(data) in ([], [(0, b"1234")])  # no header of b, no partial record
    assert "b: the file now holds 5 bytes (expected 4)" in str(ch.error)


@pytest.fixture
def fstats(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The fds the feeder threads pass to os.fstat during the test."""
    calls: list[int] = []
    real_fstat = os.fstat

    def counting_fstat(fd: int) -> os.stat_result:
        if threading.current_thread().name.startswith("pipe-feeder-"):
            calls.append(fd)
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", counting_fstat)
    return calls


@pytest.mark.parametrize("record_io", [False, True])
def test_small_files_of_their_listed_size_are_read_without_fstat(
    tmp_path: Path, data_dir: Path, fstats: list[int], record_io: bool
) -> None:
    files = {f"s{n:04}": os.urandom(n % 7 + 4093) for n in range(300)}
    files["big"] = os.urandom(SPLICE_MIN + 1)
    source = make_local_source(tmp_path / "src", files)
    with PipeChannel("t", data_dir, items_of(source), record_io=record_io) as channel:
        for epoch in range(2):
            data = read_epoch(data_dir / f"t_{epoch}")
            if record_io:
                assert [p for _, p in decode(data)] == [files[name] for name in sorted(files)]
            else:
                assert data == in_key_order(files)
    assert channel.error is None
    assert len(fstats) == 2  # the big file, once per epoch


def test_small_files_whose_size_changed_are_sent_as_they_are_now_without_recordio(
    tmp_path: Path, data_dir: Path
) -> None:
    source = make_local_source(tmp_path / "src", {"a": b"1234", "b": b"5678", "c": b"9"})
    entries = source.entries()
    (tmp_path / "src" / "a").write_bytes(b"12")
    (tmp_path / "src" / "b").write_bytes(b"5678ab")
    with PipeChannel("t", data_dir, PipeItems.from_source(source, entries)) as channel:
        assert read_epoch(data_dir / "t_0") == b"125678ab9"
    assert channel.error is None


def test_a_recordio_file_that_shrank_fails_the_channel(tmp_path: Path, data_dir: Path) -> None:
    source = make_local_source(tmp_path / "src", {"a": b"1234", "b": b"5678"})
    entries = source.entries()
    (tmp_path / "src" / "b").write_bytes(b"56")
    with PipeChannel("t", data_dir, PipeItems.from_source(source, entries), record_io=True) as ch:
        data = read_epoch(data_dir / "t_0")
        wait_for(lambda: ch.error is not None)
    assert decode(data) in ([], [(0, b"1234")])
    assert "b: the file now holds 2 bytes (expected 4)" in str(ch.error)


def test_a_vanished_local_file_fails_the_channel_with_its_name(
    tmp_path: Path, data_dir: Path
) -> None:
    source = make_local_source(tmp_path / "src", {"a": b"1234", "gone": b"5678"})
    entries = source.entries()
    (tmp_path / "src" / "gone").unlink()
    with PipeChannel("t", data_dir, PipeItems.from_source(source, entries)) as channel:
        read_epoch(data_dir / "t_0")
        wait_for(lambda: channel.error is not None)
    assert "gone: cannot open" in str(channel.error)


def test_local_files_follow_the_shuffled_and_sharded_order(tmp_path: Path, data_dir: Path) -> None:
    files = {f"o{n:02}": os.urandom(100 + n) for n in range(30)}
    files["o07"] = os.urandom(SPLICE_MIN + 3)  # spliced, in its place
    source = make_local_source(tmp_path / "src", files)
    names = sorted(files)
    items = PipeItems.from_source(source, source.entries(), shuffle_seed=7, shard=Shard(1, 3))
    with PipeChannel("t", data_dir, items, record_io=True):
        for epoch in range(2):
            payloads = [p for _, p in decode(read_epoch(data_dir / f"t_{epoch}"))]
            assert payloads == [files[names[i]] for i in items.order(epoch)]
            assert len(payloads) == 10


def test_a_spooled_payload_beyond_memory_is_spliced_from_disk(
    tmp_path: Path, data_dir: Path, spliced: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feeder, "SPOOL_MEMORY", 64 * 1024)
    payloads = {"big.gz": os.urandom(SPLICE_MIN * 2 + 1), "small.gz": os.urandom(1000)}
    stored = {name: gzip.compress(data, compresslevel=1) for name, data in payloads.items()}
    source = make_local_source(tmp_path / "src", stored)
    spool = tmp_path / "spool"
    spool.mkdir()
    with PipeChannel(
        "t", data_dir, items_of(source), record_io=True, gzip=True, spool_dir=spool
    ) as channel:
        for epoch in range(2):
            records = decode(read_epoch(data_dir / f"t_{epoch}"))
            assert records == [(0, payloads["big.gz"]), (0, payloads["small.gz"])]
    assert channel.error is None
    assert sum(spliced) == 2 * len(payloads["big.gz"])  # the small one stayed in memory
    assert list(spool.iterdir()) == []


def test_the_pipe_buffer_is_as_big_as_the_system_allows(tmp_path: Path, data_dir: Path) -> None:
    source = make_local_source(tmp_path / "src", {"a": b"x"})
    with PipeChannel("t", data_dir, items_of(source)):
        wait_for((data_dir / "t_0").exists)
        with open(data_dir / "t_0", "rb") as fifo:
            assert fifo.read() == b"x"  # written after the pipe grew
            size = fcntl.fcntl(fifo.fileno(), fcntl.F_GETPIPE_SZ)
    assert size == min(PIPE_MAX, pipe_max_size())
