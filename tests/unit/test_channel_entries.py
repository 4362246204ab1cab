"""One rule for the odd entries of a local channel directory (issue 15, defect 7), in every
input mode, applied when the channel is listed, before the job starts:

    regular files and symlinks to them         data
    directories and symlinks to them           walked (a link back to an enclosing one: loop)
    dangling symlinks, symlink loops, FIFOs,   skipped, one notice naming them
    sockets, devices
    a file or directory that cannot be read    the run is refused (exit 2), naming it

Listing-level tests cover every kind; real jobs (File, Pipe, FastFile) show the notice and that
the job runs on the data; the CLI refuses an unreadable file with exit 2 as a real non-root
user (root reads everything).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.errors import SourceError
from emulator.storage.local import LocalSource, Skipped
from tests.fixtures.entries import DATA, make_odd_tree

NOBODY = 65534


SKIPPED = [
    Skipped("dangling", "dangling symlink"),
    Skipped("fifo", "FIFO"),
    Skipped("self", "symlink loop"),
    Skipped("sock", "socket"),
    Skipped("sub/up", "symlink loop"),
    Skipped("sublink/up", "symlink loop"),
]


def listed(source: LocalSource) -> dict[str, bytes]:
    return {e.relative_path: Path(e.location).read_bytes() for e in source.entries()}


def test_regular_files_and_folders_are_data_and_the_rest_is_skipped(tmp_path: Path) -> None:
    root = make_odd_tree(tmp_path / "data")
    source = LocalSource(str(root))
    assert listed(source) == DATA
    assert source.skipped == SKIPPED


def test_devices_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "a").write_bytes(b"a")
    (root / "null").symlink_to("/dev/null")  # a link to a character device
    try:
        os.mknod(root / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))
        devices = [Skipped("null", "character device"), Skipped("zero", "character device")]
    except PermissionError:  # no CAP_MKNOD here: the link alone shows the rule
        devices = [Skipped("null", "character device")]
    source = LocalSource(str(root))
    assert [e.relative_path for e in source.entries()] == ["a"]
    assert source.skipped == devices


def test_a_prefix_applies_the_same_rule(tmp_path: Path) -> None:
    make_odd_tree(tmp_path / "data")
    source = LocalSource(str(tmp_path / "data" / "su"))  # matches sub/ and sublink/
    assert listed(source) == {"b/c.csv": b"c\n", "blink/c.csv": b"c\n"}
    assert source.skipped == [Skipped("b/up", "symlink loop"), Skipped("blink/up", "symlink loop")]


@pytest.mark.parametrize("kind", ["fifo", "dangling", "self"])
def test_a_channel_that_is_only_an_odd_entry_has_no_files(tmp_path: Path, kind: str) -> None:
    root = make_odd_tree(tmp_path / "data")
    with pytest.raises(SourceError, match=f"no files found \\(skipped 1 entry .* {kind}\\)"):
        LocalSource(str(root / kind)).entries()


def test_an_odd_entry_named_as_the_prefix_is_skipped_and_the_prefix_still_matches(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    os.mkfifo(root / "train")
    (root / "train.csv").write_bytes(b"t")
    source = LocalSource(str(root / "train"))  # as s3://b/data/train matches data/train.csv
    assert [e.relative_path for e in source.entries()] == [".csv"]
    assert source.skipped == [Skipped("train", "FIFO")]


def test_a_link_into_the_channel_from_outside_is_walked_once(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "x").write_bytes(b"x")
    (outside / "deep" / "again").symlink_to(outside)  # a cycle through a linked folder
    root = tmp_path / "data"
    root.mkdir()
    (root / "link").symlink_to(outside)
    source = LocalSource(str(root))
    assert [e.relative_path for e in source.entries()] == ["link/deep/x"]
    assert source.skipped == [Skipped("link/deep/again", "symlink loop")]


def test_a_very_deep_tree_lists(tmp_path: Path) -> None:
    depth = 1200  # deeper than Python's recursion limit (os.makedirs, rmtree recurse: not used)
    folders = [tmp_path / "data"]
    for _ in range(depth):
        folders.append(folders[-1] / "d")
    for folder in folders:
        folder.mkdir()
    (folders[-1] / "x").write_bytes(b"x")
    try:
        [entry] = LocalSource(str(folders[0])).entries()
        assert entry.relative_path == "d/" * depth + "x"
    finally:
        (folders[-1] / "x").unlink()
        for folder in reversed(folders):
            folder.rmdir()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder other users can reach (pytest's tmp_path is root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="channel-entries-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def list_as_other_user(uri: str) -> dict[str, Any]:
    """List ``uri`` as a user who is not its files' owner: nobody, in a forked child, when we
    are root; else ourselves (chmod then binds us too)."""
    if os.geteuid() != 0:
        return _list(uri)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, list, report, and leave at once
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write, json.dumps(_list(uri)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(data)
    return result


def _list(uri: str) -> dict[str, Any]:
    source = LocalSource(uri)
    try:
        return {"entries": [e.relative_path for e in source.entries()]}
    except SourceError as exc:
        return {"error": str(exc)}


def readable_tree(root: Path) -> Path:
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a").write_bytes(b"a")
    (data / "sub" / "b").write_bytes(b"b")
    for path in (data, data / "sub"):
        path.chmod(0o755)
    for path in (data / "a", data / "sub" / "b"):
        path.chmod(0o644)
    return data


def test_another_user_lists_a_readable_tree(open_dir: Path) -> None:
    data = readable_tree(open_dir)
    assert list_as_other_user(str(data)) == {"entries": ["a", "sub/b"]}


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("file", "secret (file: permission denied)"),
        ("folder", "private (directory: permission denied)"),
        ("folder-without-search", "listable (directory: permission denied)"),
        ("link-to-file", "secret (file: permission denied)"),
    ],
)
def test_an_unreadable_entry_refuses_the_channel_naming_it(
    open_dir: Path, case: str, named: str
) -> None:
    data = readable_tree(open_dir)
    if case in ("file", "link-to-file"):
        secret = (data if case == "file" else open_dir) / "secret"
        secret.write_bytes(b"s")
        secret.chmod(0o600)
        if case == "link-to-file":
            (data / "link").symlink_to(secret)
    elif case == "folder":
        (data / "private").mkdir(mode=0o700)
        (data / "private" / "x").write_bytes(b"x")
    else:
        (data / "listable").mkdir()
        (data / "listable" / "x").write_bytes(b"x")
        (data / "listable").chmod(0o744)  # names can be read, files not reached
    result = list_as_other_user(str(data))
    assert "error" in result, result
    assert named in result["error"]
    assert "cannot be read by the user running the emulator" in result["error"]
    assert "chmod a+r" in result["error"]


def test_every_unreadable_entry_is_counted_and_the_first_named(open_dir: Path) -> None:
    data = readable_tree(open_dir)
    for index in range(7):
        path = data / f"locked-{index}"
        path.write_bytes(b"x")
        path.chmod(0o600)
    result = list_as_other_user(str(data))
    assert "7 entries cannot be read" in result["error"]
    assert "locked-4 (file" in result["error"]
    assert "locked-5" not in result["error"]
    assert "and 2 more" in result["error"]
