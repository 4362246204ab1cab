"""emulator.stage.fastfile.mounts: the mount table and FastFile server identification.

No FUSE needed: the mount table is parsed from sample mountinfo text, the servers are plain
processes whose command line names the FastFile module. The real mounts are covered by
test_fastfile.py, test_fastfile_job.py and test_no_leaks.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.cleanup.prune import fastfile_server
from emulator.stage.fastfile import mount as fastfile
from emulator.stage.fastfile import mounts
from emulator.stage.fastfile import server as server_module
from emulator.stage.fastfile.mounts import (
    FSNAME,
    FSTYPE,
    MountRecord,
    fastfile_mounts,
    find_stale_mounts,
    force_unmount,
    is_mounted,
    mount_at,
    read_mounts,
    server_alive,
    server_pid,
    unmount,
)

MOUNTINFO = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "40 22 0:50 / /tmp/with\\040space rw - tmpfs tmp\\134fs rw\n"
    "41 22 0:51 / /work/jobs/a/data rw,nosuid shared:7 master:3 - fuse.emulator-fastfile "
    "emulator-fastfile:123:train rw,user_id=0\n"
)


@pytest.fixture
def server() -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line names the FastFile module, as a file system process's."""
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "emulator.stage.fastfile.server"],
        stdin=subprocess.PIPE,
    ) as proc:
        try:
            # Until exec completes, /proc/<pid>/cmdline is still the forked pytest's.
            deadline = time.monotonic() + 10
            cmdline = Path(f"/proc/{proc.pid}/cmdline")
            while b"emulator.stage.fastfile.server" not in cmdline.read_bytes():
                assert time.monotonic() < deadline, "the server process never started"
                time.sleep(0.01)
            yield proc
        finally:
            proc.kill()
            proc.wait()


def test_read_mounts_parses_fields_and_unescapes(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTINFO)
    assert read_mounts(table) == [
        MountRecord(Path("/"), "ext4", "/dev/sda1"),
        MountRecord(Path("/tmp/with space"), "tmpfs", "tmp\\fs"),
        MountRecord(Path("/work/jobs/a/data"), FSTYPE, "emulator-fastfile:123:train"),
    ]


def test_read_mounts_of_this_process_has_the_root() -> None:
    assert any(record.mountpoint == Path("/") for record in read_mounts())
    root = mount_at(Path("/"))
    assert root is not None and root.mountpoint == Path("/")


def test_mount_helpers_leave_plain_directories_alone(tmp_path: Path) -> None:
    assert mount_at(tmp_path) is None
    assert not is_mounted(tmp_path)
    assert fastfile_mounts(tmp_path) == []
    assert find_stale_mounts(tmp_path) == []
    force_unmount(tmp_path)  # nothing mounted: no-op
    unmount(tmp_path)
    assert tmp_path.is_dir()


def test_fastfile_mounts_at_or_below_root(monkeypatch: pytest.MonkeyPatch) -> None:
    records = [
        MountRecord(Path("/w/a"), FSTYPE, f"{FSNAME}:1:a"),
        MountRecord(Path("/w/a/b"), FSTYPE, f"{FSNAME}:1:b"),
        MountRecord(Path("/w/ab"), FSTYPE, f"{FSNAME}:1:c"),  # a sibling, not below /w/a
        MountRecord(Path("/w/a/c"), "fuse.other", "other"),
    ]
    monkeypatch.setattr(mounts, "read_mounts", lambda: records)
    assert fastfile_mounts(Path("/w/a")) == records[:2]
    assert fastfile_mounts(Path("/w")) == records[:3]
    assert fastfile_mounts(Path("/elsewhere")) == []


def test_server_pid_needs_a_fastfile_command_line(server: subprocess.Popen[bytes]) -> None:
    assert server_pid(f"{FSNAME}:{server.pid}:train") == server.pid
    assert server_alive(f"{FSNAME}:{server.pid}:train")
    assert fastfile_server(f"{FSNAME}:{server.pid}:train") == server.pid
    # server_pid reads the pid field only; server_alive also wants the FastFile fsname.
    assert server_pid(f"other:{server.pid}") == server.pid
    assert not server_alive(f"other:{server.pid}")
    # A process that is not a FastFile server (this one), or none at all.
    assert server_pid(f"{FSNAME}:{os.getpid()}:x") is None
    assert not server_alive(f"{FSNAME}:{os.getpid()}:x")
    for source in (FSNAME, f"{FSNAME}:", f"{FSNAME}:abc:x", f"{FSNAME}:-1:x", "none"):
        assert server_pid(source) is None
        assert not server_alive(source)


def test_a_dead_server_is_gone(server: subprocess.Popen[bytes]) -> None:
    source = f"{FSNAME}:{server.pid}:train"
    server.kill()
    server.wait()
    assert server_pid(source) is None
    assert not server_alive(source)
    assert fastfile_server(source) is None


def test_stale_mounts_are_those_without_a_live_server(
    server: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    records = [
        MountRecord(Path("/w/live"), FSTYPE, f"{FSNAME}:{server.pid}:live"),
        MountRecord(Path("/w/dead"), FSTYPE, f"{FSNAME}:{dead.pid}:dead"),
        MountRecord(Path("/w/dead/deeper"), FSTYPE, f"{FSNAME}:{dead.pid}:deeper"),
        MountRecord(Path("/w/dead"), FSTYPE, f"{FSNAME}:{dead.pid}:again"),  # stacked
    ]
    monkeypatch.setattr(mounts, "read_mounts", lambda: records)
    assert find_stale_mounts(Path("/w")) == [Path("/w/dead/deeper"), Path("/w/dead")]
    assert find_stale_mounts(Path("/w/live")) == []


def test_server_module_names_the_file_system_process() -> None:
    # FastFileMount starts `python -m SERVER_MODULE`; prune recognises the process by it.
    assert mounts.SERVER_MODULE == server_module.__name__ == "emulator.stage.fastfile.server"


def test_fastfile_still_exports_the_mount_table_names() -> None:
    for name in (
        "FSNAME",
        "FSTYPE",
        "MountRecord",
        "find_stale_mounts",
        "force_unmount",
        "is_mounted",
        "read_mounts",
    ):
        assert getattr(fastfile, name) is getattr(mounts, name)
        assert name in fastfile.__all__
