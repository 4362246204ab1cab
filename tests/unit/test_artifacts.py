"""What a finished job leaves (CONTRACT.md section 3): model.tar.gz merged from every host with
relative names, the lowest-numbered host winning a clash, and SageMaker's FailureReason."""

from __future__ import annotations

import gzip
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from emulator.finish.artifacts import failure_reason, merge_tree, pack
from tests.fixtures.jobs import read_archive

MakeFiles = Callable[[dict[str, bytes]], Path]


def test_pack_merges_the_files_of_every_host(make_files: MakeFiles, tmp_path: Path) -> None:
    algo1 = make_files({"model.pt": b"weights", "meta/config.json": b"{}"})
    algo2 = make_files({"host2/extra.bin": b"\x00\x01"})
    result = pack([algo1, algo2], tmp_path / "model.tar.gz")
    assert read_archive(tmp_path / "model.tar.gz") == {
        "model.pt": b"weights",
        "meta/config.json": b"{}",
        "host2/extra.bin": b"\x00\x01",
    }
    assert result.files == 3
    assert result.clashes == []


def test_a_clash_keeps_the_first_hosts_file_and_is_reported(
    make_files: MakeFiles, tmp_path: Path
) -> None:
    algo1 = make_files({"model.pt": b"from algo-1", "a/same.txt": b"1"})
    algo2 = make_files({"model.pt": b"from algo-2", "a/same.txt": b"2", "only2": b"2"})
    algo3 = make_files({"model.pt": b"from algo-3"})
    result = pack([algo1, algo2, algo3], tmp_path / "model.tar.gz")
    assert read_archive(tmp_path / "model.tar.gz") == {
        "model.pt": b"from algo-1",
        "a/same.txt": b"1",
        "only2": b"2",
    }
    assert sorted(result.clashes) == ["a/same.txt", "model.pt", "model.pt"]
    assert result.files == 3


def test_archive_names_are_relative_and_sorted(make_files: MakeFiles, tmp_path: Path) -> None:
    model = make_files({"z.txt": b"", "b/c/d.txt": b"", "a.txt": b"", "b/a.txt": b""})
    pack([model], tmp_path / "model.tar.gz")
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        names = tar.getnames()
    assert names == ["a.txt", "z.txt", "b/a.txt", "b/c/d.txt"]  # files of a dir, then subdirs
    assert not [n for n in names if n.startswith(("/", "./", "..")) or str(model) in n]


@pytest.mark.parametrize("sources", ["empty", "missing", "none"])
def test_no_files_give_a_valid_empty_tar_gz(tmp_path: Path, sources: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    roots = {"empty": [empty], "missing": [tmp_path / "absent"], "none": []}[sources]
    result = pack(roots, tmp_path / "model.tar.gz")
    with gzip.open(tmp_path / "model.tar.gz") as raw:
        raw.read()  # a complete gzip stream
    with tarfile.open(tmp_path / "model.tar.gz", "r:gz") as tar:
        assert tar.getmembers() == []
    assert result.files == 0


def test_file_contents_and_modes_survive_packing(make_files: MakeFiles, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4099
    model = make_files({"big.bin": payload, "run.sh": b"#!/bin/sh\n"})
    (model / "run.sh").chmod(0o755)
    pack([model], tmp_path / "model.tar.gz")
    assert read_archive(tmp_path / "model.tar.gz")["big.bin"] == payload
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        assert tar.getmember("run.sh").mode & 0o777 == 0o755


def test_merge_tree_copies_uncompressed_with_the_same_rules(
    make_files: MakeFiles, tmp_path: Path
) -> None:
    algo1 = make_files({"model.pt": b"1", "sub/a": b"a"})
    algo2 = make_files({"model.pt": b"2", "sub/b": b"b"})
    result = merge_tree([algo1, algo2], tmp_path / "model")
    found = {
        p.relative_to(tmp_path / "model").as_posix(): p.read_bytes()
        for p in (tmp_path / "model").rglob("*")
        if p.is_file()
    }
    assert found == {"model.pt": b"1", "sub/a": b"a", "sub/b": b"b"}
    assert result.clashes == ["model.pt"]


@pytest.mark.parametrize(
    ("content", "exit_code", "reason"),
    [
        ("Out of memory", 1, "AlgorithmError: Out of memory, exit code: 1"),
        (
            "Traceback (most recent call last):\n  ValueError: bad\n",
            3,
            "AlgorithmError: Traceback (most recent call last):\n  ValueError: bad\n, exit code: 3",
        ),
        ("", 137, "AlgorithmError: , exit code: 137"),
        (None, 2, "AlgorithmError: , exit code: 2"),  # no failure file
    ],
    ids=["message", "multiline", "empty-file", "no-file"],
)
def test_failure_reason_formats_like_sagemaker(
    tmp_path: Path, content: str | None, exit_code: int, reason: str
) -> None:
    failure = tmp_path / "failure"
    if content is not None:
        failure.write_text(content)
    assert failure_reason(exit_code, failure) == reason


def test_failure_reason_keeps_the_first_1024_characters_of_the_file(tmp_path: Path) -> None:
    failure = tmp_path / "failure"
    text = "".join(chr(ord("a") + i % 26) for i in range(5000))
    failure.write_text(text)
    assert failure_reason(1, failure) == f"AlgorithmError: {text[:1024]}, exit code: 1"


def test_failure_reason_counts_characters_not_bytes(tmp_path: Path) -> None:
    failure = tmp_path / "failure"
    failure.write_text("é" * 2000)
    assert failure_reason(1, failure) == f"AlgorithmError: {'é' * 1024}, exit code: 1"


@pytest.mark.parametrize("kind", ["symlink-to-host-file", "fifo", "directory"])
def test_only_a_regular_failure_file_is_read(tmp_path: Path, kind: str) -> None:
    # The container made this path: a link's target would be the HOST's file, a FIFO would
    # block the emulator forever.
    secret = tmp_path / "host-secret"
    secret.write_text("the host's own file")
    failure = tmp_path / "failure"
    if kind == "symlink-to-host-file":
        failure.symlink_to(secret)
    elif kind == "fifo":
        os.mkfifo(failure)
    else:
        failure.mkdir()
    assert failure_reason(1, failure) == "AlgorithmError: , exit code: 1"


def test_a_huge_failure_file_is_not_read_whole(tmp_path: Path) -> None:
    failure = tmp_path / "failure"
    with failure.open("wb") as file:
        file.truncate(2**36)  # 64 GiB, sparse: reading it whole would exhaust memory
    assert failure_reason(1, failure) == f"AlgorithmError: {chr(0) * 1024}, exit code: 1"


def test_a_failure_file_that_is_not_utf8_is_still_reported(tmp_path: Path) -> None:
    failure = tmp_path / "failure"
    failure.write_bytes(b"bad byte \xff here")
    assert failure_reason(1, failure) == "AlgorithmError: bad byte \ufffd here, exit code: 1"


def make_links(root: Path) -> None:
    """What training code writes: links by container path, by relative path, to a directory."""
    (root / "latest.pt").symlink_to("/opt/ml/model/epoch-3.pt")  # dangling on the host
    (root / "best.pt").symlink_to("model.pt")
    (root / "current").symlink_to("checkpoints/epoch-3")


def test_symlinks_are_archived_as_symlinks(make_files: MakeFiles, tmp_path: Path) -> None:
    model = make_files({"model.pt": b"w", "checkpoints/epoch-3/state": b"s"})
    make_links(model)
    result = pack([model], tmp_path / "model.tar.gz")
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        links = {m.name: m.linkname for m in tar.getmembers() if m.issym()}
    assert links == {
        "latest.pt": "/opt/ml/model/epoch-3.pt",
        "best.pt": "model.pt",
        "current": "checkpoints/epoch-3",  # a linked directory is kept, not dropped
    }
    assert result.files == 5


def test_the_uncompressed_model_keeps_symlinks_and_never_follows_them(
    make_files: MakeFiles, tmp_path: Path
) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("the host's own file")
    model = make_files({"model.pt": b"w", "checkpoints/epoch-3/state": b"s"})
    make_links(model)
    (model / "leak").symlink_to(secret)  # a container naming a host path
    result = merge_tree([model], tmp_path / "model")
    copied = tmp_path / "model"
    assert os.readlink(copied / "latest.pt") == "/opt/ml/model/epoch-3.pt"
    assert os.readlink(copied / "best.pt") == "model.pt"
    assert os.readlink(copied / "current") == "checkpoints/epoch-3"
    assert os.readlink(copied / "leak") == str(secret)  # a link, not a copy of the host's file
    assert (copied / "checkpoints" / "epoch-3" / "state").read_bytes() == b"s"
    assert result.files == 6


@pytest.mark.parametrize("merge", ["pack", "merge_tree"])
def test_a_later_host_never_writes_through_or_over_an_earlier_hosts_link_or_file(
    make_files: MakeFiles, tmp_path: Path, merge: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    algo1 = make_files({"file": b"1", "dir/a": b"1"})
    (algo1 / "link").symlink_to(outside)
    algo2 = make_files({"link/planted": b"2", "file/below": b"2", "dir/b": b"2"})
    algo3 = make_files({})
    (algo3 / "dir").symlink_to(outside)  # a link where algo-1 has a directory
    if merge == "pack":
        result = pack([algo1, algo2, algo3], tmp_path / "model.tar.gz")
        with tarfile.open(tmp_path / "model.tar.gz") as tar:
            assert sorted(tar.getnames()) == ["dir/a", "dir/b", "file", "link"]
    else:
        result = merge_tree([algo1, algo2, algo3], tmp_path / "model")
        assert os.readlink(tmp_path / "model" / "link") == str(outside)
        assert (tmp_path / "model" / "dir").is_dir()
        assert sorted(p.name for p in (tmp_path / "model" / "dir").iterdir()) == ["a", "b"]
    assert sorted(result.clashes) == ["dir", "file/below", "link/planted"]
    assert list(outside.iterdir()) == []
