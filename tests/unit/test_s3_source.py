"""S3Source against real HTTP S3 servers: moto (ThreadedMotoServer) and SeaweedFS."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from emulator.config import S3Settings, s3_settings_from_flags
from emulator.errors import SourceError
from emulator.request.spec import DataSourceSpec
from emulator.storage import open_source, open_uri
from emulator.storage.base import Entry
from emulator.storage.s3 import MULTIPART_THRESHOLD, S3Source, parse_s3_uri, relative_name
from tests.fixtures.s3 import (
    Credentials,
    RecordingProgress,
    S3Server,
    digests,
    free_port,
    isolate_aws_environment,
    tree_digests,
)

pytestmark = pytest.mark.s3

MANY = 1050  # more than one ListObjectsV2 page (1000 keys)
MiB = 1024 * 1024


@pytest.fixture(scope="session")
def many_objects(moto_server: S3Server) -> tuple[str, dict[str, bytes]]:
    """A bucket holding MANY small objects under many/ (created once: ~5 s on moto)."""
    bucket = moto_server.new_bucket("many")
    objects = {
        f"many/part-{i:05d}/{i}.rec": f"record {i}\n".encode() * (i % 7) for i in range(MANY)
    }
    moto_server.put_objects(bucket, objects)
    return bucket, objects


def source(uri: str) -> S3Source:
    found = open_source(DataSourceSpec("S3Prefix", uri))
    assert isinstance(found, S3Source)
    return found


def names(entries: list[Entry]) -> list[str]:
    return [e.relative_path for e in entries]


# -- listing ----------------------------------------------------------------------------------


def test_lists_every_page(moto_s3: S3Server, many_objects: tuple[str, dict[str, bytes]]) -> None:
    bucket, objects = many_objects
    entries = source(f"s3://{bucket}/many/").entries()
    assert len(entries) == MANY
    assert names(entries) == sorted(k.removeprefix("many/") for k in objects)
    assert all(e.size == len(objects[e.location]) for e in entries)


def test_downloads_many_small_objects_byte_exact(
    moto_s3: S3Server, many_objects: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    bucket, objects = many_objects
    src = source(f"s3://{bucket}/many")
    entries = src.entries()[::5]  # ~200 objects: moto serves ~200 GETs a second
    progress = RecordingProgress()
    src.download(entries, tmp_path, progress)
    expected = {e.relative_path: objects[e.location] for e in entries}
    assert tree_digests(tmp_path) == digests(expected)
    assert progress.objects == len(entries)
    assert progress.bytes == sum(e.size for e in entries)


def test_prefix_is_a_string_prefix_of_keys(moto_s3: S3Server) -> None:
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(
        bucket,
        {"data/train/x.csv": b"x", "data/trainer.csv": b"t", "data/test/y.csv": b"y", "other": b""},
    )
    assert names(source(f"s3://{bucket}/data/tra").entries()) == ["in/x.csv", "iner.csv"]
    assert names(source(f"s3://{bucket}/data/train").entries()) == ["er.csv", "x.csv"]
    assert names(source(f"s3://{bucket}/data/train/").entries()) == ["x.csv"]
    assert names(source(f"s3://{bucket}/data").entries()) == [
        "test/y.csv",
        "train/x.csv",
        "trainer.csv",
    ]
    assert len(source(f"s3://{bucket}").entries()) == 4  # the whole bucket


def test_key_equal_to_the_prefix_keeps_its_base_name(moto_s3: S3Server) -> None:
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(bucket, {"data/train.csv": b"a,b", "data/train.csv.bak": b"old"})
    entries = source(f"s3://{bucket}/data/train.csv").entries()
    assert names(entries) == [".bak", "train.csv"]


def test_folder_markers_are_skipped_but_empty_objects_kept(
    moto_s3: S3Server, tmp_path: Path
) -> None:
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(
        bucket, {"d/": b"", "d/sub/": b"", "d/sub/empty": b"", "d/sub/full": b"123"}
    )
    src = source(f"s3://{bucket}/d/")
    entries = src.entries()
    assert [(e.relative_path, e.size) for e in entries] == [("sub/empty", 0), ("sub/full", 3)]
    src.download(entries, tmp_path)
    assert (tmp_path / "sub/empty").read_bytes() == b""
    assert (tmp_path / "sub/full").read_bytes() == b"123"


def test_unicode_and_special_keys(moto_s3: S3Server, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    objects = {
        "u/données/日本語 file.txt": "こんにちは".encode(),
        "u/emoji/🙂+plus%percent.bin": b"\x00\xff" * 100,
        "u/spaces in/name with spaces": b"s",
    }
    moto_s3.put_objects(bucket, objects)
    src = source(f"s3://{bucket}/u/")
    src.download(src.entries(), tmp_path)
    assert tree_digests(tmp_path) == digests({k[2:]: v for k, v in objects.items()})


@pytest.mark.parametrize("bad", ["../escape", "a/../../escape", "a/./b", "a//b"])
def test_keys_escaping_the_channel_are_refused(moto_s3: S3Server, tmp_path: Path, bad: str) -> None:
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(bucket, {"p/fine": b"ok", f"p/{bad}": b"evil"})
    with pytest.raises(SourceError, match="escape the channel directory"):
        source(f"s3://{bucket}/p/").entries()
    assert not any(tmp_path.iterdir())


def test_two_objects_for_one_path_are_refused(moto_s3: S3Server, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(bucket, {"data/x": b"1", "datax": b"2"})  # both land at "x"
    src = source(f"s3://{bucket}/data")
    with pytest.raises(SourceError, match="both be written"):
        src.download(src.entries(), tmp_path)


def test_object_and_folder_of_the_same_name_are_refused(moto_s3: S3Server, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(bucket, {"p/a": b"file", "p/a/b": b"nested"})
    src = source(f"s3://{bucket}/p/")
    with pytest.raises(SourceError, match="both an object and a folder"):
        src.download(src.entries(), tmp_path)


# -- errors -----------------------------------------------------------------------------------


def test_missing_bucket(moto_s3: S3Server) -> None:
    with pytest.raises(SourceError, match="bucket does not exist"):
        source("s3://no-such-bucket-here/data/").entries()


def test_empty_prefix(moto_s3: S3Server) -> None:
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(bucket, {"data/x": b"1", "only-markers/": b""})
    with pytest.raises(SourceError, match="no objects under this prefix"):
        source(f"s3://{bucket}/nothing/here").entries()
    with pytest.raises(SourceError, match="no objects under this prefix"):
        source(f"s3://{bucket}/only-markers/").entries()


def test_unreachable_endpoint_fails_fast(moto_s3: S3Server) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = S3Settings(endpoint_url=dead, max_attempts=1, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(SourceError, match="cannot reach the S3 endpoint") as caught:
        S3Source("s3://bucket/data/", settings).entries()
    assert time.monotonic() - started < 5
    assert dead in str(caught.value)


def test_no_credentials(
    moto_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws_environment(monkeypatch, {"AWS_ENDPOINT_URL_S3": moto_server.endpoint_url})
    with pytest.raises(SourceError, match="no usable AWS credentials"):
        source("s3://any-bucket/data/").entries()


def test_unknown_profile(moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(SourceError, match="no-such-profile"):
        source("s3://any-bucket/data/").entries()


def test_missing_object_in_reads(moto_s3: S3Server) -> None:
    bucket = moto_s3.new_bucket()
    src = source(f"s3://{bucket}/p/")
    ghost = Entry("ghost", "p/ghost", 10)
    with pytest.raises(FileNotFoundError):
        src.open(ghost)
    with pytest.raises(FileNotFoundError):
        src.read_range(ghost, 0, 5)
    with pytest.raises(SourceError, match="no such object"):
        open_uri(f"s3://{bucket}/p/ghost")


@pytest.mark.parametrize(
    ("uri", "match"),
    [("s3://", "names no bucket"), ("https://example.com/b/k", "must name an S3 object")],
)
def test_bad_uris(uri: str, match: str) -> None:
    with pytest.raises(SourceError, match=match):
        S3Source(uri)


# -- reads --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blob_object(moto_server: S3Server) -> tuple[str, bytes]:
    bucket = moto_server.new_bucket()
    body = os.urandom(3 * MiB + 17)
    moto_server.client.put_object(Bucket=bucket, Key="b/blob.bin", Body=body)
    return bucket, body


@pytest.fixture
def blob(moto_s3: S3Server, blob_object: tuple[str, bytes]) -> tuple[S3Source, Entry, bytes]:
    bucket, body = blob_object
    src = source(f"s3://{bucket}/b/")
    [entry] = src.entries()
    return src, entry, body


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 10), (5, 1000), (MiB, MiB), (3 * MiB, 100), (3 * MiB + 17, 5), (3 * MiB + 20, 5), (7, 0)],
)
def test_read_range(blob: tuple[S3Source, Entry, bytes], offset: int, length: int) -> None:
    src, entry, body = blob
    assert src.read_range(entry, offset, length) == body[offset : offset + length]


def test_open_streams_in_chunks(blob: tuple[S3Source, Entry, bytes]) -> None:
    src, entry, body = blob
    digest = hashlib.sha256()
    with src.open(entry) as stream:
        while chunk := stream.read(100_000):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(body).hexdigest()


def test_open_resumes_after_the_connection_drops(blob: tuple[S3Source, Entry, bytes]) -> None:
    src, entry, body = blob
    with src.open(entry) as stream:
        reader: Any = stream.raw  # type: ignore[attr-defined]
        fetch, gets = reader._get, []

        def counting_get() -> Any:
            gets.append(reader._pos)
            return fetch()

        reader._get = counting_get
        head = stream.read(MiB)
        reader._body._raw_stream.close()  # cut the connection under the reader
        rest = stream.read()
    assert head + rest == body
    assert len(gets) == 1 and 0 < gets[0] < len(body)  # resumed once, mid-object


def test_open_uri_reads_one_object(blob: tuple[S3Source, Entry, bytes]) -> None:
    src, entry, body = blob
    with open_uri(f"s3://{src.bucket}/{entry.location}") as stream:
        assert stream.read() == body


def test_download_verifies_sizes(blob: tuple[S3Source, Entry, bytes], tmp_path: Path) -> None:
    src, entry, _ = blob
    stale = Entry(entry.relative_path, entry.location, entry.size - 1, None)
    with pytest.raises(SourceError, match="listing said"):
        src.download([stale], tmp_path)


def test_download_of_big_objects_uses_ranged_parts(moto_s3: S3Server, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    body = os.urandom(MULTIPART_THRESHOLD + MiB + 3)  # two ranged parts
    moto_s3.client.put_object(Bucket=bucket, Key="big/a.bin", Body=body)
    src = source(f"s3://{bucket}/big/")
    progress = RecordingProgress()
    src.download(src.entries(), tmp_path, progress)
    assert tree_digests(tmp_path) == digests({"a.bin": body})
    assert (progress.bytes, progress.objects) == (len(body), 1)


def test_download_of_a_shard_writes_only_its_objects(moto_s3: S3Server, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(bucket, {f"s/{n}": n.encode() for n in "abcdef"})
    src = source(f"s3://{bucket}/s/")
    src.download(src.entries()[::2], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c", "e"]


# -- configuration ----------------------------------------------------------------------------


def test_endpoint_from_the_generic_aws_variable(
    moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = moto_s3.new_bucket()
    moto_s3.put_objects(bucket, {"k": b"v"})
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint_url)  # botocore resolves it itself
    assert names(source(f"s3://{bucket}/k").entries()) == ["k"]


def test_an_endpoint_that_is_not_a_url_is_refused() -> None:
    with pytest.raises(SourceError, match="must start with http"):
        s3_settings_from_flags(endpoint_url="127.0.0.1:9000")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, S3Settings()),
        (
            {
                "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1",
                "AWS_PROFILE": "p",
                "AWS_REGION": "eu-west-1",
                "AWS_RETRY_MODE": "adaptive",
                "AWS_MAX_ATTEMPTS": "9",
                "EMULATOR_S3_MAX_CONCURRENCY": "4",
            },
            S3Settings("http://127.0.0.1:1", "p", "eu-west-1", "adaptive", 9, max_concurrency=4),
        ),
        (  # botocore's precedence, and its switch to ignore configured endpoints
            {
                "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1",
                "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
                "AWS_DEFAULT_PROFILE": "first",
                "AWS_PROFILE": "second",
                "AWS_DEFAULT_REGION": "us-west-2",
                "AWS_REGION": "eu-west-1",
                "AWS_RETRY_MODE": "bogus",
            },
            S3Settings(None, "first", "us-west-2"),
        ),
    ],
)
def test_settings_from_the_environment(environ: dict[str, str], expected: S3Settings) -> None:
    assert S3Settings.from_environ(environ) == expected


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_bad_concurrency_setting(value: str) -> None:
    with pytest.raises(SourceError, match="EMULATOR_S3_MAX_CONCURRENCY"):
        S3Settings.from_environ({"EMULATOR_S3_MAX_CONCURRENCY": value})


# -- URIs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("s3://b/k/p", "b", "k/p"),
        ("s3://b", "b", ""),
        ("s3://b/", "b", ""),
        ("https://my.bucket.s3.amazonaws.com/a/b%20c", "my.bucket", "a/b c"),
        ("https://bkt.s3.eu-west-1.amazonaws.com/train/", "bkt", "train/"),
        ("https://bkt.s3-us-west-2.amazonaws.com/x", "bkt", "x"),
        ("https://s3.us-east-2.amazonaws.com/bkt/x/y", "bkt", "x/y"),
        ("https://s3.amazonaws.com/bkt", "bkt", ""),
    ],
)
def test_parse_s3_uri(uri: str, bucket: str, key: str) -> None:
    location = parse_s3_uri(uri)
    assert (location.bucket, location.key) == (bucket, key)


@pytest.mark.parametrize(
    ("prefix", "key", "expected"),
    [
        ("data/", "data/a/b", "a/b"),
        ("data", "data/a", "a"),
        ("data/tra", "data/train/x", "in/x"),
        ("data/x.csv", "data/x.csv", "x.csv"),
        ("", "top.txt", "top.txt"),
        ("data/", "data//etc/passwd", "etc/passwd"),
    ],
)
def test_relative_name(prefix: str, key: str, expected: str) -> None:
    assert relative_name(prefix, key) == expected


# -- SeaweedFS: a real object store -----------------------------------------------------------


def test_seaweedfs_download_and_ranged_reads(seaweedfs_s3: S3Server, tmp_path: Path) -> None:
    bucket = seaweedfs_s3.new_bucket()
    objects = {f"sw/small/{i:03d}.bin": os.urandom(i * 997) for i in range(40)}
    objects["sw/big.bin"] = os.urandom(20 * MiB + 5)  # above the multipart threshold
    objects["sw/ü/日本.txt"] = b"unicode"
    seaweedfs_s3.put_objects(bucket, objects)
    src = source(f"s3://{bucket}/sw/")
    entries = src.entries()
    progress = RecordingProgress()
    src.download(entries, tmp_path, progress)
    assert tree_digests(tmp_path) == digests({k[3:]: v for k, v in objects.items()})
    assert progress.objects == len(objects)
    big = next(e for e in entries if e.relative_path == "big.bin")
    body = objects["sw/big.bin"]
    for offset, length in [(0, 1), (MiB - 3, 2 * MiB), (20 * MiB, 100), (21 * MiB, 1)]:
        assert src.read_range(big, offset, length) == body[offset : offset + length]
    with src.open(big) as stream:
        assert hashlib.sha256(stream.read()).digest() == hashlib.sha256(body).digest()


def test_seaweedfs_access_denied(
    seaweedfs_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bucket = seaweedfs_server.new_bucket()
    seaweedfs_server.put_objects(bucket, {"secret/x": b"x"})
    assert seaweedfs_server.limited is not None
    env = seaweedfs_server.environ(seaweedfs_server.limited)
    isolate_aws_environment(monkeypatch, env)
    with pytest.raises(SourceError, match="access denied"):
        source(f"s3://{bucket}/secret/").entries()


def test_seaweedfs_rejects_unknown_credentials(
    seaweedfs_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = seaweedfs_server.environ(Credentials("not-a-key", "not-a-secret"))
    isolate_aws_environment(monkeypatch, env)
    with pytest.raises(SourceError, match="rejected the credentials"):
        source("s3://whatever-bucket/x/").entries()
