"""ManifestFile and AugmentedManifestFile sources, in S3 (moto) and on the local disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator.errors import SourceError
from emulator.request.spec import DataSourceSpec
from emulator.storage import Source, open_source
from emulator.storage.manifest import AugmentedManifestSource, ManifestSource, parse_manifest
from tests.fixtures.s3 import RecordingProgress, S3Server, digests, tree_digests


def manifest_source(uri: str) -> Source:
    found = open_source(DataSourceSpec("ManifestFile", uri))
    assert isinstance(found, ManifestSource)
    return found


def manifest(prefix: str, *keys: str) -> bytes:
    return json.dumps([{"prefix": prefix}, *keys]).encode()


OBJECTS = {"a/one.csv": b"1,2,3\n", "a/b/two.csv": b"4,5\n" * 1000, "empty.bin": b""}


# -- S3 -------------------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_manifest_lists_prefix_plus_key(moto_s3: S3Server, tmp_path: Path) -> None:
    data = moto_s3.new_bucket("data")
    moto_s3.put_objects(data, {f"set/{k}": v for k, v in OBJECTS.items()} | {"set/extra": b"x"})
    meta = moto_s3.new_bucket("meta")  # the manifest may live in another bucket
    moto_s3.put_objects(meta, {"m.json": manifest(f"s3://{data}/set/", *OBJECTS)})
    src = manifest_source(f"s3://{meta}/m.json")
    entries = src.entries()
    assert [(e.relative_path, e.location, e.size) for e in entries] == sorted(
        (k, f"set/{k}", len(v)) for k, v in OBJECTS.items()
    )
    progress = RecordingProgress()
    src.download(entries, tmp_path, progress)
    assert tree_digests(tmp_path) == digests(OBJECTS)
    assert progress.objects == len(OBJECTS)
    with src.open(entries[0]) as stream:
        assert stream.read() == OBJECTS[entries[0].relative_path]
    assert src.read_range(entries[1], 2, 3) == OBJECTS[entries[1].relative_path][2:5]


@pytest.mark.s3
def test_prefix_without_slash_is_concatenated(moto_s3: S3Server) -> None:
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(bucket, {"day-01.csv": b"1", "day-02.csv": b"22", "m": b""})
    moto_s3.put_objects(bucket, {"m": manifest(f"s3://{bucket}/day-", "01.csv", "02.csv")})
    entries = manifest_source(f"s3://{bucket}/m").entries()
    assert [(e.relative_path, e.location) for e in entries] == [
        ("01.csv", "day-01.csv"),
        ("02.csv", "day-02.csv"),
    ]


@pytest.mark.s3
def test_missing_listed_objects_are_named(moto_s3: S3Server) -> None:
    bucket = moto_s3.new_bucket()
    listing = manifest(f"s3://{bucket}/p/", "here", "gone")
    moto_s3.put_objects(bucket, {"p/here": b"1", "m": listing})
    expected = f"^s3://{bucket}/m: object not found: s3://{bucket}/p/gone$"
    with pytest.raises(SourceError, match=expected):
        manifest_source(f"s3://{bucket}/m").entries()


@pytest.mark.s3
def test_manifest_prefix_in_a_missing_bucket(moto_s3: S3Server) -> None:
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(bucket, {"m": manifest("s3://no-such-bucket-xyz/p/", "a")})
    with pytest.raises(SourceError, match="bucket does not exist"):
        manifest_source(f"s3://{bucket}/m").entries()


@pytest.mark.s3
def test_missing_manifest(moto_s3: S3Server) -> None:
    bucket = moto_s3.new_bucket()
    with pytest.raises(SourceError, match="no such object"):
        manifest_source(f"s3://{bucket}/nothing.json").entries()


@pytest.mark.s3
def test_s3_manifest_may_not_list_local_files(moto_s3: S3Server, tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"local")
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(bucket, {"m": manifest(f"{tmp_path}/", "secret")})
    with pytest.raises(SourceError, match="must have an S3 prefix"):
        manifest_source(f"s3://{bucket}/m").entries()


@pytest.mark.s3
def test_local_manifest_may_list_s3_objects(moto_s3: S3Server, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(bucket, {"p/x": b"xx"})
    (tmp_path / "m.json").write_bytes(manifest(f"s3://{bucket}/p/", "x"))
    src = manifest_source(str(tmp_path / "m.json"))
    src.download(src.entries(), tmp_path / "out")
    assert (tmp_path / "out/x").read_bytes() == b"xx"


@pytest.mark.s3
def test_augmented_manifest_in_s3(moto_s3: S3Server) -> None:
    bucket = moto_s3.new_bucket()
    lines = b'{"source-ref": "s3://b/x.jpg", "label": 1}\n'
    moto_s3.put_objects(bucket, {"aug/train.jsonl": lines, "aug/train.jsonl.bak": b"old"})
    src = open_source(DataSourceSpec("AugmentedManifestFile", f"s3://{bucket}/aug/train.jsonl"))
    assert isinstance(src, AugmentedManifestSource)
    [entry] = src.entries()  # the object itself, not everything starting with its name
    assert (entry.relative_path, entry.size) == ("train.jsonl", len(lines))
    with src.open(entry) as stream:
        assert stream.read() == lines
    with pytest.raises(SourceError, match="not found"):
        AugmentedManifestSource(f"s3://{bucket}/aug/none.jsonl").entries()


# -- local ---------------------------------------------------------------------------------------


@pytest.fixture
def local_objects(tmp_path: Path) -> Path:
    root = tmp_path / "objects"
    for name, body in OBJECTS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    return root


@pytest.mark.parametrize("form", ["absolute", "file-uri", "relative"])
def test_local_manifest(local_objects: Path, tmp_path: Path, form: str) -> None:
    prefix = {
        "absolute": f"{local_objects}/",
        "file-uri": local_objects.as_uri() + "/",
        "relative": "objects/",  # from the manifest's folder
    }[form]
    (tmp_path / "m.json").write_bytes(manifest(prefix, *OBJECTS))
    src = manifest_source((tmp_path / "m.json").as_uri())
    entries = src.entries()
    assert [e.relative_path for e in entries] == sorted(OBJECTS)
    progress = RecordingProgress()
    src.download(entries, tmp_path / "out", progress)
    assert tree_digests(tmp_path / "out") == digests(OBJECTS)
    assert src.read_range(entries[0], 1, 2) == OBJECTS[entries[0].relative_path][1:3]


def test_local_manifest_missing_file(local_objects: Path, tmp_path: Path) -> None:
    (tmp_path / "m.json").write_bytes(manifest(f"{local_objects}/", "a/one.csv", "a", "nope"))
    with pytest.raises(SourceError, match=r"file not found: .*objects/a, .*objects/nope"):
        manifest_source(str(tmp_path / "m.json")).entries()


def test_local_augmented_manifest(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"a": 1}\n')
    src = AugmentedManifestSource(str(path))
    assert [e.relative_path for e in src.entries()] == ["train.jsonl"]
    with pytest.raises(SourceError, match="Pipe input mode only"):
        src.download(src.entries(), tmp_path / "out")
    with pytest.raises(SourceError, match="no such augmented manifest"):
        AugmentedManifestSource(str(tmp_path / "train")).entries()


# -- the manifest format -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"{not json", "not a JSON manifest"),
        (b"\xff\xfe", "not a JSON manifest"),
        (b"{}", "must be a JSON array"),
        (b"[]", "must be a JSON array"),
        (b'["s3://b/p/", "k"]', "first element must be"),
        (b'[{"prefix": ""}, "k"]', "first element must be"),
        (b'[{"prefix": 3}, "k"]', "first element must be"),
        (b'[{"prefix": "s3://b/"}, "k", 5]', "element 2 is 5"),
        (b'[{"prefix": "s3://b/"}]', "lists no objects"),
    ],
)
def test_malformed_manifests(raw: bytes, match: str) -> None:
    with pytest.raises(SourceError, match=match):
        parse_manifest(raw, "m.json")


@pytest.mark.parametrize("key", ["../up", "a/../../up", "/abs", "a//b", "", "a/./b"])
def test_keys_escaping_the_channel_are_refused(
    local_objects: Path, tmp_path: Path, key: str
) -> None:
    (tmp_path / "m.json").write_bytes(manifest(f"{local_objects}/", "a/one.csv", key))
    with pytest.raises(SourceError, match="escape the channel directory"):
        manifest_source(str(tmp_path / "m.json")).entries()


@pytest.mark.s3
def test_s3_keys_escaping_the_channel_are_refused_before_any_request(moto_s3: S3Server) -> None:
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(bucket, {"m": manifest(f"s3://{bucket}/p/", "ok", "../../etc/passwd")})
    with pytest.raises(SourceError, match="escape the channel directory"):
        manifest_source(f"s3://{bucket}/m").entries()
