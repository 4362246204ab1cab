"""Pipe-mode feeders against real FIFOs and real threads, read as a training container would."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.errors import SourceError
from emulator.request.spec import ChannelSpec, DataSourceSpec
from emulator.stage.pipe.feeder import PipeChannel
from emulator.stage.pipe.items import CHUNK_SIZE, PipeItems, Shard
from emulator.storage import Entry
from emulator.storage.local import LocalSource
from tests.fixtures.pipe import (
    decode,
    in_key_order,
    items_of,
    join_multipart,
    make_local_source,
    read_epoch,
    wait_for,
)

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_feeder_thread_left")]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, bytes]:
    return {
        "b.bin": os.urandom(CHUNK_SIZE + 17),
        "a.bin": os.urandom(1000),
        "sub/c.bin": os.urandom(3 * CHUNK_SIZE + 1),
        "sub/a.bin": b"",
    }


def test_every_epoch_is_the_channel_in_key_order(
    tmp_path: Path, data_dir: Path, files: dict[str, bytes]
) -> None:
    source = make_local_source(tmp_path / "src", files)
    with PipeChannel("train", data_dir, items_of(source)) as channel:
        for epoch in range(3):
            assert sha(read_epoch(data_dir / f"train_{epoch}")) == sha(in_key_order(files))
        stats = channel.stats()
    assert stats.epochs_completed == 3
    assert stats.bytes_written == 3 * len(in_key_order(files))
    assert channel.error is None
    assert list(data_dir.iterdir()) == []


def test_a_reader_in_another_process_reads_epochs(
    tmp_path: Path, data_dir: Path, files: dict[str, bytes]
) -> None:
    source = make_local_source(tmp_path / "src", files)
    script = (
        "import hashlib, sys\n"
        "for epoch in range(2):\n"
        "    with open(f'{sys.argv[1]}/ch_{epoch}', 'rb') as f:\n"
        "        print(hashlib.sha256(f.read()).hexdigest())\n"
    )
    with PipeChannel("ch", data_dir, items_of(source)):
        result = subprocess.run(
            [sys.executable, "-c", script, str(data_dir)], capture_output=True, timeout=20
        )
    assert result.stdout.decode().split() == [sha(in_key_order(files))] * 2


def test_fifos_are_readable_by_anyone_and_next_exists_before_eof(
    tmp_path: Path, data_dir: Path, files: dict[str, bytes]
) -> None:
    source = make_local_source(tmp_path / "src", files)
    channel = PipeChannel("train", data_dir, items_of(source))
    old_umask = os.umask(0o077)
    try:
        channel.start()
    finally:
        os.umask(old_umask)
    try:
        for epoch in range(3):
            path = data_dir / f"train_{epoch}"
            wait_for(path.exists)
            assert stat.S_ISFIFO(path.stat().st_mode)
            assert stat.S_IMODE(path.stat().st_mode) == 0o644
            with open(path, "rb") as fifo:
                head = fifo.read(10)
                # The epoch is bigger than the pipe buffer: the feeder is mid-epoch here.
                assert (data_dir / f"train_{epoch + 1}").exists()
                rest = fifo.read()
                assert (data_dir / f"train_{epoch + 1}").exists()
            assert head + rest == in_key_order(files)
            wait_for(lambda p=path: not p.exists())  # type: ignore[misc]
            wait_for((data_dir / f"train_{epoch + 2}").exists)
    finally:
        channel.stop()


def test_early_close_ends_the_epoch_and_the_next_is_complete(
    tmp_path: Path, data_dir: Path, files: dict[str, bytes]
) -> None:
    source = make_local_source(tmp_path / "src", files)
    with PipeChannel("train", data_dir, items_of(source)) as channel:
        with open(data_dir / "train_0", "rb") as fifo:
            assert fifo.read(100) == in_key_order(files)[:100]
        assert read_epoch(data_dir / "train_1") == in_key_order(files)
        assert channel.stats().epochs_closed_early == 1
        assert channel.stats().epochs_completed == 1
        with open(data_dir / "train_2", "rb"):
            pass  # opened and closed at once, nothing read
        assert read_epoch(data_dir / "train_3") == in_key_order(files)
    assert channel.error is None


def test_a_stalled_reader_does_not_hold_up_another_channel(
    tmp_path: Path, data_dir: Path, files: dict[str, bytes]
) -> None:
    slow = PipeChannel("slow", data_dir, items_of(make_local_source(tmp_path / "s1", files)))
    fast = PipeChannel(
        "fast", data_dir, items_of(make_local_source(tmp_path / "s2", {"x": b"fast"}))
    )
    with slow, fast, open(data_dir / "slow_0", "rb") as stalled:
        assert stalled.read(1) == files["a.bin"][:1]
        for epoch in range(3):
            assert read_epoch(data_dir / f"fast_{epoch}") == b"fast"
        # Stop both while the slow feeder waits for room in a full pipe.
        started = time.monotonic()
        slow.stop()
        fast.stop()
        assert time.monotonic() - started < 1
    assert sorted(data_dir.iterdir()) == []


def test_stop_is_prompt_when_no_reader_ever_came(tmp_path: Path, data_dir: Path) -> None:
    source = make_local_source(tmp_path / "src", {"x": b"data"})
    channel = PipeChannel("train", data_dir, items_of(source))
    channel.start()
    assert sorted(p.name for p in data_dir.iterdir()) == ["train_0", "train_1"]
    time.sleep(0.1)  # let the feeder block in open()
    started = time.monotonic()
    channel.stop()
    assert time.monotonic() - started < 1
    assert list(data_dir.iterdir()) == []
    channel.stop()  # idempotent


def test_start_twice_is_refused_and_stop_without_start_is_harmless(
    tmp_path: Path, data_dir: Path
) -> None:
    items = items_of(make_local_source(tmp_path / "src", {"x": b"data"}))
    PipeChannel("never", data_dir, items).stop()
    with PipeChannel("train", data_dir, items) as channel, pytest.raises(RuntimeError):
        channel.start()


def test_epochs_keep_coming_without_a_limit(tmp_path: Path, data_dir: Path) -> None:
    source = make_local_source(tmp_path / "src", {"x": b"tiny"})
    with PipeChannel("train", data_dir, items_of(source)) as channel:
        for epoch in range(40):
            assert read_epoch(data_dir / f"train_{epoch}") == b"tiny"
    assert channel.stats().epochs_completed == 40


def test_recordio_one_record_per_object_with_padding(
    tmp_path: Path, data_dir: Path, files: dict[str, bytes]
) -> None:
    files = {**files, "e1": b"1", "e2": b"22", "e3": b"333", "e4": b"4444", "e5": b"55555"}
    source = make_local_source(tmp_path / "src", files)
    with PipeChannel("train", data_dir, items_of(source), record_io=True) as channel:
        for epoch in range(2):
            records = decode(read_epoch(data_dir / f"train_{epoch}"))
            assert records == [(0, files[name]) for name in sorted(files)]
    framed = sum(8 + (len(d) + 3) // 4 * 4 for d in files.values())
    assert channel.stats().bytes_written == 2 * framed


@pytest.mark.parametrize("record_io", [False, True])
def test_zero_byte_objects(tmp_path: Path, data_dir: Path, record_io: bool) -> None:
    source = make_local_source(tmp_path / "src", {"a": b"", "b": b"xy", "c": b""})
    with PipeChannel("train", data_dir, items_of(source), record_io=record_io):
        data = read_epoch(data_dir / "train_0")
    if record_io:
        assert decode(data) == [(0, b""), (0, b"xy"), (0, b"")]
        assert data[:8] == bytes.fromhex("0a23d7ce00000000")
    else:
        assert data == b"xy"


def test_a_host_with_no_objects_gets_empty_epochs(data_dir: Path) -> None:
    source = LocalSource(str(data_dir))  # never listed: no entries on this host
    with PipeChannel("train", data_dir, PipeItems.from_source(source, [])):
        assert read_epoch(data_dir / "train_0") == b""
        assert read_epoch(data_dir / "train_1") == b""


@pytest.mark.parametrize("record_io", [False, True])
def test_gzip_objects_are_decompressed_while_streamed(
    tmp_path: Path, data_dir: Path, record_io: bool
) -> None:
    big = os.urandom(CHUNK_SIZE) * 3  # compresses, decompresses to 3 MiB
    plain = {"a.gz": b"hello ", "b.gz": b"multi member", "c.gz": big, "d.gz": b""}
    stored = {
        "a.gz": gzip.compress(plain["a.gz"]),
        "b.gz": gzip.compress(b"multi ") + gzip.compress(b"member") + bytes(8),
        "c.gz": gzip.compress(big, compresslevel=1),
        "d.gz": gzip.compress(b""),
    }
    source = make_local_source(tmp_path / "src", stored)
    channel = PipeChannel(
        "train", data_dir, items_of(source), record_io=record_io, gzip=True, spool_dir=tmp_path
    )
    with channel:
        for epoch in range(2):
            data = read_epoch(data_dir / f"train_{epoch}")
            if record_io:
                assert decode(data) == [(0, plain[name]) for name in sorted(plain)]
            else:
                assert data == b"".join(plain[name] for name in sorted(plain))
    assert channel.error is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]  # spool files gone


def test_shuffle_sends_each_epoch_in_its_own_seeded_order(tmp_path: Path, data_dir: Path) -> None:
    files = {f"obj{n:02}": f"payload {n}".encode() for n in range(20)}
    source = make_local_source(tmp_path / "src", files)
    names = sorted(files)
    items = items_of(source, shuffle_seed=1234)
    orders = []
    with PipeChannel("train", data_dir, items, record_io=True):
        for epoch in range(3):
            payloads = [p for _, p in decode(read_epoch(data_dir / f"train_{epoch}"))]
            assert payloads == [files[names[i]] for i in items.order(epoch)]
            orders.append(payloads)
    assert all(sorted(order) == sorted(files.values()) for order in orders)
    assert len({tuple(order) for order in orders}) == 3
    same_seed = items_of(source, shuffle_seed=1234)
    assert [same_seed.order(e) for e in range(3)] == [items.order(e) for e in range(3)]


def test_augmented_manifest_streams_refs_and_inlines_values(tmp_path: Path, data_dir: Path) -> None:
    images = {n: os.urandom(n * 1000 + 3) for n in range(1, 5)}
    lines = []
    for n, data in images.items():
        (tmp_path / f"img{n}.bin").write_bytes(data)
        ref = (tmp_path / f"img{n}.bin").as_uri()
        lines.append(json.dumps({"source-ref": ref, "class": n, "note": f"n°{n}"}))
    (tmp_path / "train.manifest").write_text("\n".join(lines) + "\n", encoding="utf-8")
    uri = str(tmp_path / "train.manifest")
    items = PipeItems.from_augmented_manifest(uri, ["source-ref", "class"], shard=Shard(0, 2))
    with PipeChannel("train", data_dir, items, record_io=True) as channel:
        for epoch in range(2):
            records = decode(read_epoch(data_dir / f"train_{epoch}"))
            assert records == [(0, images[1]), (0, b"1"), (0, images[3]), (0, b"3")]
    assert channel.error is None


def test_gzipped_refs_are_spooled_for_recordio(tmp_path: Path, data_dir: Path) -> None:
    payload = os.urandom(3 * CHUNK_SIZE)
    (tmp_path / "x.gz").write_bytes(gzip.compress(payload, compresslevel=1))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"a-ref": str(tmp_path / "x.gz"), "label": "cat"}) + "\n")
    items = PipeItems.from_augmented_manifest(str(manifest), ["a-ref", "label"])
    with PipeChannel("train", data_dir, items, record_io=True, gzip=True, spool_dir=tmp_path):
        assert decode(read_epoch(data_dir / "train_0")) == [(0, payload), (0, b"cat")]


def test_from_spec_takes_framing_and_compression_from_the_channel(
    tmp_path: Path, data_dir: Path
) -> None:
    source = make_local_source(tmp_path / "src", {"x.gz": gzip.compress(b"abc")})
    spec = ChannelSpec(
        name="train",
        source=DataSourceSpec("S3Prefix", str(tmp_path / "src")),
        input_mode="Pipe",
        compression="Gzip",
        record_wrapper="RecordIO",
    )
    with PipeChannel.from_spec(spec, data_dir, items_of(source)):
        assert join_multipart(decode(read_epoch(data_dir / "train_0"))) == [b"abc"]


def test_an_object_that_changed_size_fails_the_channel(tmp_path: Path, data_dir: Path) -> None:
    source = make_local_source(tmp_path / "src", {"a": b"1234", "b": b"5678"})
    entries = [Entry("a", str(tmp_path / "src" / "a"), 8), *source.entries()[1:]]
    items = PipeItems.from_source(source, entries)
    with PipeChannel("train", data_dir, items, record_io=True) as channel:
        data = read_epoch(data_dir / "train_0")
        wait_for(lambda: channel.error is not None)
        assert b"5678" not in data  # the epoch is cut short
        assert not (data_dir / "train_1").exists()  # a reader learns no more epochs come
    assert isinstance(channel.error, SourceError)
    assert "a:" in str(channel.error)


def test_invalid_gzip_fails_the_channel_with_the_object_name(
    tmp_path: Path, data_dir: Path
) -> None:
    source = make_local_source(tmp_path / "src", {"bad.gz": b"not gzip at all"})
    with PipeChannel("train", data_dir, items_of(source), gzip=True) as channel:
        assert read_epoch(data_dir / "train_0") == b""
        wait_for(lambda: channel.error is not None)
    assert isinstance(channel.error, SourceError)
    assert "bad.gz" in str(channel.error)


def test_start_fails_clearly_when_the_data_dir_is_missing(tmp_path: Path) -> None:
    items = items_of(make_local_source(tmp_path / "src", {"x": b"1"}))
    with pytest.raises(Exception, match="cannot create the Pipe-mode FIFO"):
        PipeChannel("train", tmp_path / "missing", items).start()
