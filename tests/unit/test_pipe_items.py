"""Pipe items: epoch order (shuffle, shard), augmented manifests, gzip streaming."""

from __future__ import annotations

import gzip
import io
import json
import random
import zlib
from pathlib import Path

import pytest

from emulator.errors import SourceError
from emulator.stage.pipe.items import (
    CHUNK_SIZE,
    PipeItems,
    Shard,
    encode_inline_value,
    epoch_order,
    gunzip,
    iter_lines,
)
from emulator.storage.local import LocalSource


def test_without_seed_every_epoch_is_key_order() -> None:
    assert epoch_order(5, 0) == epoch_order(5, 7) == [0, 1, 2, 3, 4]


def test_shuffle_rule_is_random_seeded_with_seed_colon_epoch() -> None:
    expected = list(range(50))
    random.Random("42:3").shuffle(expected)
    assert epoch_order(50, 3, shuffle_seed=42) == expected


def test_shuffle_is_deterministic_permutation_and_differs_per_epoch() -> None:
    orders = [epoch_order(30, epoch, shuffle_seed=7) for epoch in range(4)]
    assert orders == [epoch_order(30, epoch, shuffle_seed=7) for epoch in range(4)]
    assert all(sorted(order) == list(range(30)) for order in orders)
    assert len({tuple(order) for order in orders}) == 4
    assert epoch_order(30, 0, shuffle_seed=8) != orders[0]


def test_shard_without_seed_is_round_robin_over_key_order() -> None:
    assert epoch_order(7, 0, shard=Shard(1, 3)) == [1, 4]
    assert epoch_order(2, 0, shard=Shard(2, 3)) == []


@pytest.mark.parametrize("epoch", [0, 1])
def test_shards_of_one_epoch_partition_the_shuffled_units(epoch: int) -> None:
    shards = [epoch_order(10, epoch, shuffle_seed=1, shard=Shard(i, 3)) for i in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(10))
    assert [len(s) for s in shards] == [4, 3, 3]


def test_shard_index_must_be_below_count() -> None:
    with pytest.raises(ValueError):
        Shard(3, 3)


def test_items_from_a_source_follow_entries_and_carry_sizes(tmp_path: Path) -> None:
    for name, data in {"b": b"22", "a": b"1", "c/d": b"333"}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    source = LocalSource(str(tmp_path))
    items = list(PipeItems.from_source(source, source.entries()).epoch(0))
    assert [(i.name, i.size, i.inline) for i in items] == [
        ("a", 1, False),
        ("b", 2, False),
        ("c/d", 3, False),
    ]
    with items[2].open() as stream:
        assert stream.read() == b"333"
    # Local files carry their path: the Pipe feeder opens them itself.
    assert [i.path for i in items] == [str(tmp_path / n) for n in ("a", "b", "c/d")]


def test_local_files_describe_a_local_source_without_items(tmp_path: Path) -> None:
    for name, data in {"b": b"22", "a": b"1"}.items():
        (tmp_path / name).write_bytes(data)
    source = LocalSource(str(tmp_path))
    items = PipeItems.from_source(source, source.entries(), shuffle_seed=3)
    assert items.local_files is not None
    paths, sizes = items.local_files
    assert list(paths) == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert list(sizes) == [1, 2]
    for index in range(2):
        (item,) = items.unit(index)
        assert (item.path, item.size) == (paths[index], sizes[index])
    in_order = [items.unit(i)[0] for i in items.order(1)]
    assert [(i.name, i.path) for i in in_order] == [(i.name, i.path) for i in items.epoch(1)]


def test_items_of_other_sources_and_manifests_have_no_local_files(tmp_path: Path) -> None:
    uri = write_manifest(tmp_path / "m.jsonl", [{"a": 1}])
    assert PipeItems.from_augmented_manifest(uri, ["a"]).local_files is None
    assert PipeItems(0, lambda index: ()).local_files is None


def write_manifest(path: Path, lines: list[object]) -> str:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path.as_uri()


def test_manifest_items_per_attribute_in_attribute_order(tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00blob")
    uri = write_manifest(
        tmp_path / "m.jsonl",
        [
            {"label": 3, "source-ref": blob.as_uri(), "other": "x"},
            "",
            {"source-ref": str(blob), "label": "héllo"},
        ],
    )
    items = PipeItems.from_augmented_manifest(uri, ["source-ref", "label"])
    assert len(items) == 2
    got = []
    for item in items.epoch(0):
        with item.open() as stream:
            got.append((stream.read(), item.inline, item.size))
    assert got == [
        (b"\x00blob", False, None),
        (b"3", True, 1),
        (b"\x00blob", False, None),
        ("héllo".encode(), True, 6),
    ]
    assert [item.path for item in items.epoch(0)] == [str(blob), None, str(blob), None]


def test_manifest_refs_outside_the_local_disk_have_no_path(tmp_path: Path) -> None:
    uri = write_manifest(
        tmp_path / "m.jsonl",
        [{"a-ref": "s3://bucket/key"}, {"a-ref": "file://otherhost/x"}],
    )
    assert [i.path for i in PipeItems.from_augmented_manifest(uri, ["a-ref"]).epoch(0)] == [
        None,
        None,  # open_uri refuses it when the item is sent
    ]


def test_manifest_shard_takes_every_nth_line(tmp_path: Path) -> None:
    uri = write_manifest(tmp_path / "m.jsonl", [{"a": n} for n in range(5)])
    items = PipeItems.from_augmented_manifest(uri, ["a"], shard=Shard(1, 2))
    values = []
    for item in items.epoch(0):
        with item.open() as stream:
            values.append(stream.read())
    assert values == [b"1", b"3"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"b": 1}', "no attribute 'a'"),
        ("[1, 2]", "not a JSON object"),
        ("{not json", "not a JSON object"),
        ('{"a": 1, "x-ref": 5}', "must hold a URI string"),
    ],
)
def test_bad_manifest_lines_fail_early_with_line_number(
    tmp_path: Path, line: str, message: str
) -> None:
    uri = write_manifest(tmp_path / "m.jsonl", [{"a": 1, "x-ref": "/y"}, line])
    with pytest.raises(SourceError, match=message) as excinfo:
        PipeItems.from_augmented_manifest(uri, ["a", "x-ref"])
    assert "line 2" in str(excinfo.value)


def test_manifest_needs_attribute_names(tmp_path: Path) -> None:
    uri = write_manifest(tmp_path / "m.jsonl", [{"a": 1}])
    with pytest.raises(SourceError, match="AttributeNames"):
        PipeItems.from_augmented_manifest(uri, [])


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("text é", "text é".encode()),
        (3, b"3"),
        (0.5, b"0.5"),
        (True, b"true"),
        (None, b"null"),
        ([1, "é"], '[1,"é"]'.encode()),
        ({"k": [1, 2]}, b'{"k":[1,2]}'),
    ],
)
def test_inline_values_strings_raw_others_compact_json(value: object, encoded: bytes) -> None:
    assert encode_inline_value(value) == encoded


def test_iter_lines_handles_lines_across_chunks_and_no_final_newline() -> None:
    data = b"a" * (CHUNK_SIZE + 5) + b"\nb\n\nc"
    assert list(iter_lines(io.BytesIO(data))) == [b"a" * (CHUNK_SIZE + 5), b"b", b"", b"c"]


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("chunk", [1, 7, 4096, CHUNK_SIZE])
def test_gunzip_multi_member_with_zero_padding(chunk: int) -> None:
    data = gzip.compress(b"first ") + gzip.compress(b"") + gzip.compress(b"second") + bytes(9)
    assert b"".join(gunzip(chunked(data, chunk), "x")) == b"first second"


def test_gunzip_output_steps_are_bounded() -> None:
    plain = bytes(5 * CHUNK_SIZE + 11)
    steps = list(gunzip([gzip.compress(plain)], "x"))
    assert b"".join(steps) == plain
    assert max(len(step) for step in steps) <= CHUNK_SIZE


def test_gunzip_of_nothing_is_nothing() -> None:
    assert list(gunzip([], "x")) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"plain text, not gzip", "not valid gzip"),
        (gzip.compress(b"abc" * 100)[:-6], "truncated"),
        (gzip.compress(b"abc") + b"trailing garbage", "not valid gzip"),
        (zlib.compress(b"zlib, not gzip"), "not valid gzip"),
    ],
)
def test_gunzip_errors_name_the_object(data: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=message) as excinfo:
        list(gunzip([data], "bucket/key.gz"))
    assert "bucket/key.gz" in str(excinfo.value)
