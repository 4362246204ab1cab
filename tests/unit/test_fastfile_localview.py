"""FastFile on a local directory: when it is bind-mounted read-only as it is, no FUSE
(emulator/stage/fastfile/localview.py), and when FUSE serves it instead; and the notice when the
directory changes during the job. ``LocalViews`` on real directories, no engine; the jobs are in
tests/engine/test_fastfile_localview_job.py.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from emulator.request.spec import ChannelSpec, DataSourceSpec
from emulator.stage.fastfile import ENV_LOCAL_VIEW, LocalViews
from emulator.storage.base import Entry
from emulator.storage.local import LocalSource

MakeFiles = Callable[[dict[str, bytes]], Path]

FILES = {
    "a.txt": b"alpha\n",
    "empty": b"",
    "sub/b.bin": os.urandom(70_000),
    "sub/deeper/c.txt": b"c" * 5000,
}


def channel_spec(uri: Path | str, distribution: str = "FullyReplicated") -> ChannelSpec:
    source = DataSourceSpec("S3Prefix", str(uri), distribution)  # type: ignore[arg-type]
    return ChannelSpec("train", source, "FastFile")


def bind_directory(
    uri: Path | str,
    notices: list[str] | None = None,
    host_entries: Callable[[list[Entry]], list[Entry]] = list,
    spec: ChannelSpec | None = None,
) -> Path | None:
    """What LocalViews answers for one host of a channel on ``uri``."""
    source = LocalSource(str(uri))
    entries = source.entries()
    views = LocalViews((notices if notices is not None else []).append)
    return views.directory(spec or channel_spec(uri), source, host_entries(entries), entries)


@pytest.fixture
def tree(make_files: MakeFiles) -> Path:
    return make_files(FILES)


# -- when a directory is bind-mounted ----------------------------------------------------------


def test_a_directory_that_is_exactly_its_listing_is_bind_mounted(tree: Path) -> None:
    assert bind_directory(tree) == tree


def test_a_link_to_the_directory_binds_the_directory_itself(tree: Path, tmp_path: Path) -> None:
    link = tmp_path / "link-to-data"
    link.symlink_to(tree)
    assert bind_directory(link) == Path(os.path.realpath(tree))


def test_a_single_receiving_host_of_a_sharded_channel_gets_the_directory(tree: Path) -> None:
    assert bind_directory(tree, spec=channel_spec(tree, "ShardedByS3Key")) == tree


@pytest.mark.parametrize(
    "change",
    ["link to a file", "link to a folder", "fifo", "empty folder", "dangling link"],
)
def test_a_tree_that_differs_from_its_listing_is_served_by_fuse(tree: Path, change: str) -> None:
    if change == "link to a file":
        (tree / "sub" / "link.txt").symlink_to("b.bin")
    elif change == "link to a folder":
        (tree / "again").symlink_to("sub")
    elif change == "fifo":
        os.mkfifo(tree / "sub" / "fifo")
    elif change == "empty folder":
        (tree / "sub" / "nothing").mkdir()
    else:
        (tree / "gone").symlink_to("no-such-file")
    assert bind_directory(tree) is None


@pytest.mark.parametrize(
    ("path", "mode"), [("a.txt", 0o640), ("sub", 0o750), ("sub/deeper", 0o700), ("", 0o700)]
)
def test_what_not_every_user_may_read_is_served_by_fuse(tree: Path, path: str, mode: int) -> None:
    (tree / path).chmod(mode)
    assert bind_directory(tree) is None


def test_a_shard_is_served_by_fuse(tree: Path) -> None:
    sharded = channel_spec(tree, "ShardedByS3Key")
    assert bind_directory(tree, host_entries=lambda all: all[::2], spec=sharded) is None


def test_a_file_or_a_prefix_of_names_is_served_by_fuse(tree: Path) -> None:
    assert bind_directory(tree / "a.txt") is None
    assert bind_directory(tree / "su") is None  # matches sub/...


def test_a_manifest_channel_is_served_by_fuse(tree: Path) -> None:
    manifest = ChannelSpec("train", DataSourceSpec("ManifestFile", str(tree)), "FastFile")
    assert bind_directory(tree, spec=manifest) is None


def test_files_added_after_the_listing_make_it_fuse(tree: Path) -> None:
    source = LocalSource(str(tree))
    entries = source.entries()
    (tree / "late.txt").write_bytes(b"after the listing")
    views = LocalViews(lambda notice: None)
    assert views.directory(channel_spec(tree), source, entries, entries) is None
    assert views.reason("train") == "its files are not exactly the listed objects"


def test_the_environment_can_ask_for_fuse(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_LOCAL_VIEW, "fuse")
    assert bind_directory(tree) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_mount_inside_the_directory_is_served_by_fuse(tree: Path) -> None:
    inner = tree / "sub" / "mounted"
    inner.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "inner", str(inner)], check=True)
    try:
        (inner / "x").write_bytes(b"on another file system")
        assert bind_directory(tree) is None
    finally:
        subprocess.run(["umount", "-l", str(inner)], check=True)


# -- the directory changing during the job ---------------------------------------------------


def test_changes_after_the_check_are_said_in_one_notice(tree: Path) -> None:
    source = LocalSource(str(tree))
    entries = source.entries()
    notices: list[str] = []
    views = LocalViews(notices.append)
    assert views.directory(channel_spec(tree), source, entries, entries) == tree
    views.check_unchanged()
    assert notices == []
    (tree / "new.txt").write_bytes(b"new")
    (tree / "empty").unlink()
    (tree / "a.txt").write_bytes(b"rewritten, longer\n")
    views.check_unchanged()
    (notice,) = notices
    assert notice.startswith(f"Channel train: {tree} changed while the job ran (")
    assert "(1 added, 1 removed, 1 modified)" in notice
    assert "the prefix as it was when the job started" in notice


def test_a_link_added_during_the_job_is_named_in_the_notice(tree: Path) -> None:
    source = LocalSource(str(tree))
    entries = source.entries()
    notices: list[str] = []
    views = LocalViews(notices.append)
    assert views.directory(channel_spec(tree), source, entries, entries) == tree
    (tree / "sub" / "link").symlink_to("b.bin")
    views.check_unchanged()
    assert len(notices) == 1
    assert "changed while the job ran (sub/link is not a regular file or a directory)" in notices[0]
