"""FastFile input mode, host side: real FUSE mounts over LocalSource channels (no mocks).

The block cache is also tested in-process with a counting Source. Every mount made here
carries the label ``pytest-fastfile``; a module-level check fails if one is left behind.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.errors import EnvironmentProblem, SourceError
from emulator.request.spec import DataSourceSpec
from emulator.stage.fastfile import FastFileMount, check_fuse_available
from emulator.stage.fastfile.blockcache import BlockCache, ReadHandle
from emulator.stage.fastfile.mounts import (
    FSTYPE,
    find_stale_mounts,
    force_unmount,
    is_mounted,
    read_mounts,
)
from emulator.stage.fastfile.server import FastFileOperations, build_tree
from emulator.storage import open_source
from emulator.storage.base import Entry
from emulator.storage.local import LocalSource
from tests.fixtures.s3 import S3Server

pytestmark = pytest.mark.fuse

LABEL = "pytest-fastfile"
BLOCK = 64 * 1024  # small blocks so modest files cross many block boundaries
SMALL_CACHE = 8 * BLOCK

FILES = {
    "empty": 0,
    "one": 1,
    "a.txt": 1000,
    "sub/b.bin": BLOCK - 1,
    "sub/deeper/c.bin": BLOCK,
    "sub/deeper/d.bin": BLOCK + 1,
    "multi.bin": 20 * BLOCK + 123,
    "with space & ünicode.txt": 77,
}


@pytest.fixture(scope="module", autouse=True)
def no_mounts_left_behind() -> Iterator[None]:
    yield
    leftovers = [
        record.mountpoint
        for record in read_mounts()
        if record.fstype == FSTYPE and record.source.endswith(f":{LABEL}")
    ]
    for path in leftovers:
        force_unmount(path)
    assert not leftovers, f"mounts left behind: {leftovers}"


def make_channel(root: Path, files: dict[str, int] = FILES) -> Path:
    rng = random.Random(1234)
    for name, size in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    return root


def fastfile(source_dir: Path, mountpoint: Path, **options: object) -> FastFileMount:
    spec = DataSourceSpec("S3Prefix", str(source_dir))
    options = {"block_size": BLOCK, "cache_bytes": SMALL_CACHE, "label": LABEL, **options}
    return FastFileMount(spec, LocalSource(str(source_dir)).entries(), mountpoint, **options)  # type: ignore[arg-type]


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while data := handle.read(chunk):
            digest.update(data)
    return digest.hexdigest()


def process_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def channel(tmp_path: Path) -> Path:
    return make_channel(tmp_path / "src")


@pytest.fixture
def mounted(channel: Path, tmp_path: Path) -> Iterator[Path]:
    with fastfile(channel, tmp_path / "mnt") as mount:
        yield mount.mountpoint


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(source dir, mount point) of one mount shared by the tests that only read."""
    root = tmp_path_factory.mktemp("shared")
    channel = make_channel(root / "src", {**FILES, "data.bin": 40 * BLOCK + 999})
    with fastfile(channel, root / "mnt", cache_bytes=4 * BLOCK) as mount:
        yield channel, mount.mountpoint


# --------------------------------------------------------------------------- environment


def test_check_fuse_available_passes_here() -> None:
    check_fuse_available()


# --------------------------------------------------------------------------- the view


def test_tree_sizes_and_modes_without_reading_a_byte(channel: Path, tmp_path: Path) -> None:
    with fastfile(channel, tmp_path / "mnt") as mount:
        seen = {}
        for dirpath, dirnames, filenames in os.walk(mount.mountpoint):
            for name in dirnames:
                assert (Path(dirpath) / name).stat().st_mode & 0o7777 == 0o555
            for name in filenames:
                path = Path(dirpath) / name
                seen[path.relative_to(mount.mountpoint).as_posix()] = path.stat().st_size
                assert path.stat().st_mode & 0o7777 == 0o444
        assert seen == FILES
        assert sorted(os.listdir(mount.mountpoint)) == sorted(
            ["empty", "one", "a.txt", "sub", "multi.bin", "with space & ünicode.txt"]
        )
        assert sorted(os.listdir(mount.mountpoint / "sub")) == ["b.bin", "deeper"]
        assert os.stat(mount.mountpoint).st_nlink == 3  # ., .., and sub
        assert os.stat(mount.mountpoint / "sub").st_nlink == 3  # sub/deeper
        assert os.statvfs(mount.mountpoint).f_files == len(FILES)
        assert mount.stats()["fetches"] == 0


def test_sequential_reads_match_the_source(shared: tuple[Path, Path]) -> None:
    channel, mounted = shared
    for name in FILES:
        assert sha256(mounted / name) == sha256(channel / name), name
        assert sha256(mounted / name, chunk=4096) == sha256(channel / name), name


def test_missing_names_are_enoent(shared: tuple[Path, Path]) -> None:
    mounted = shared[1]
    assert not (mounted / "nope").exists()
    with pytest.raises(FileNotFoundError):
        open(mounted / "sub" / "nope", "rb")  # noqa: SIM115


def test_empty_channel_is_an_empty_directory(tmp_path: Path) -> None:
    spec = DataSourceSpec("S3Prefix", str(tmp_path))
    with FastFileMount(spec, [], tmp_path / "mnt", label=LABEL) as mount:
        assert os.listdir(mount.mountpoint) == []


WRITES: dict[str, Callable[[Path], object]] = {
    "open for write": lambda mp: os.open(mp / "a.txt", os.O_RDWR),
    "open for append": lambda mp: os.open(mp / "a.txt", os.O_WRONLY | os.O_APPEND),
    "open with O_TRUNC": lambda mp: os.open(mp / "a.txt", os.O_RDONLY | os.O_TRUNC),
    "create": lambda mp: os.open(mp / "new.txt", os.O_WRONLY | os.O_CREAT, 0o644),
    "mkdir": lambda mp: os.mkdir(mp / "newdir"),
    "rmdir": lambda mp: os.rmdir(mp / "sub" / "deeper"),
    "unlink": lambda mp: os.unlink(mp / "a.txt"),
    "rename": lambda mp: os.rename(mp / "a.txt", mp / "b.txt"),
    "chmod": lambda mp: os.chmod(mp / "a.txt", 0o777),
    "chown": lambda mp: os.chown(mp / "a.txt", 1, 1),
    "truncate": lambda mp: os.truncate(mp / "a.txt", 0),
    "symlink": lambda mp: os.symlink("a.txt", mp / "link"),
    "link": lambda mp: os.link(mp / "a.txt", mp / "hard"),
    "setxattr": lambda mp: os.setxattr(mp / "a.txt", "user.x", b"1"),
    "utime": lambda mp: os.utime(mp / "a.txt", (1, 1)),
    "mknod": lambda mp: os.mkfifo(mp / "fifo"),
}


@pytest.mark.parametrize("operation", list(WRITES))
def test_write_operations_fail_with_erofs(shared: tuple[Path, Path], operation: str) -> None:
    mounted = shared[1]
    with pytest.raises(OSError) as caught:
        result = WRITES[operation](mounted)
        if isinstance(result, int):  # an fd: the open unexpectedly worked
            os.close(result)
    assert caught.value.errno == errno.EROFS


def test_random_reads_seek_and_mmap(shared: tuple[Path, Path]) -> None:
    channel, mounted = shared
    expected = (channel / "multi.bin").read_bytes()
    rng = random.Random(7)
    with open(mounted / "multi.bin", "rb") as handle:
        for _ in range(200):
            offset = rng.randrange(len(expected) + 100)
            size = rng.choice([1, 17, 4096, BLOCK - 1, BLOCK + 1, 3 * BLOCK])
            handle.seek(offset)
            assert handle.read(size) == expected[offset : offset + size]
        handle.seek(-10, os.SEEK_END)
        assert handle.read() == expected[-10:]
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            assert mapped[:] == expected
            assert mapped[BLOCK - 5 : 2 * BLOCK + 5] == expected[BLOCK - 5 : 2 * BLOCK + 5]


def test_many_concurrent_readers(shared: tuple[Path, Path]) -> None:
    channel, mounted = shared
    expected = {name: sha256(channel / name) for name in FILES}
    errors: list[str] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        names = list(FILES)
        rng.shuffle(names)
        for name in names:
            digest = sha256(mounted / name, chunk=rng.choice([511, 4096, BLOCK, 1 << 20]))
            if digest != expected[name]:
                errors.append(name)

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_a_source_read_failure_is_eio(channel: Path, mounted: Path) -> None:
    (channel / "multi.bin").unlink()
    with pytest.raises(OSError) as caught, open(mounted / "multi.bin", "rb") as handle:
        handle.read()
    assert caught.value.errno == errno.EIO


def test_large_sparse_channel_mounts_without_reading(tmp_path: Path) -> None:
    big = tmp_path / "src" / "big.bin"
    big.parent.mkdir()
    with open(big, "wb") as handle:
        handle.truncate(20 * 1024**3)  # sparse: no disk space used
    with fastfile(big.parent, tmp_path / "mnt", block_size=8 << 20, cache_bytes=64 << 20) as mnt:
        assert mnt.stats()["fetches"] == 0  # listing was the only up-front cost
        path = mnt.mountpoint / "big.bin"
        assert path.stat().st_size == 20 * 1024**3
        with open(path, "rb") as handle:
            assert handle.read(4096) == bytes(4096)
            handle.seek(20 * 1024**3 - 4096)
            assert handle.read() == bytes(4096)
        assert 1 <= mnt.stats()["fetches"] <= 4


def test_non_root_user_reads_through_allow_other(tmp_path: Path) -> None:
    channel = make_channel(tmp_path / "src")
    # pytest's tmp dirs are private (0700): the reader needs a path it can traverse.
    public = Path(tempfile.mkdtemp(prefix="fastfile-test-"))
    try:
        public.chmod(0o755)
        with fastfile(channel, public / "mnt") as mount:
            result = subprocess.run(
                ["cat", str(mount.mountpoint / "sub" / "b.bin")],
                user=65534,
                group=65534,
                capture_output=True,
                check=True,
            )
            assert result.stdout == (channel / "sub" / "b.bin").read_bytes()
    finally:
        os.rmdir(public / "mnt")
        os.rmdir(public)


@pytest.mark.s3
def test_an_s3_channel_is_served_by_ranged_gets(moto_s3: S3Server, tmp_path: Path) -> None:
    # The file system process rebuilds the S3 source from the inherited environment.
    bucket = moto_s3.new_bucket()
    objects = {"train/a.bin": random.Random(3).randbytes(3 * BLOCK + 5), "train/s/b": b"hello"}
    moto_s3.put_objects(bucket, objects)
    spec = DataSourceSpec("S3Prefix", f"s3://{bucket}/train/")
    entries = open_source(spec).entries()
    options = {"block_size": BLOCK, "cache_bytes": SMALL_CACHE, "label": LABEL}
    with FastFileMount(spec, entries, tmp_path / "mnt", **options) as mount:  # type: ignore[arg-type]
        assert mount.stats()["fetches"] == 0
        assert (mount.mountpoint / "a.bin").read_bytes() == objects["train/a.bin"]
        assert (mount.mountpoint / "s" / "b").read_bytes() == b"hello"
        assert mount.stats()["fetches"] == 5  # four blocks of a.bin, one of b


# --------------------------------------------------------------------------- random reads


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["data.bin", "one", "sub/deeper/d.bin"]),
    offset=st.integers(0, 40 * BLOCK + 2000),
    size=st.integers(0, 3 * BLOCK),
)
def test_random_offset_size_reads(
    shared: tuple[Path, Path], name: str, offset: int, size: int
) -> None:
    channel, mountpoint = shared
    expected = (channel / name).read_bytes()[offset : offset + size]
    fd = os.open(mountpoint / name, os.O_RDONLY)
    try:
        assert os.pread(fd, size, offset) == expected
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- lifecycle


def test_unmounted_and_reaped_after_a_normal_exit(channel: Path, tmp_path: Path) -> None:
    with fastfile(channel, tmp_path / "mnt") as mount:
        pid = mount.pid
        assert pid is not None and mount.alive()
        assert is_mounted(mount.mountpoint)
    assert not is_mounted(mount.mountpoint)
    assert process_gone(pid)
    assert not mount.alive()


def test_unmounted_and_reaped_after_an_exception(channel: Path, tmp_path: Path) -> None:
    mount = fastfile(channel, tmp_path / "mnt")
    with pytest.raises(KeyboardInterrupt), mount:
        (mount.mountpoint / "a.txt").read_bytes()
        raise KeyboardInterrupt
    assert not is_mounted(mount.mountpoint)
    assert mount.pid is None


def test_unmount_while_a_file_is_open_detaches_lazily(channel: Path, tmp_path: Path) -> None:
    with fastfile(channel, tmp_path / "mnt") as mount:
        handle = open(mount.mountpoint / "a.txt", "rb")  # noqa: SIM115
    try:
        assert not is_mounted(mount.mountpoint)
    finally:
        handle.close()


def test_parent_death_makes_the_file_system_unmount_itself(channel: Path, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from emulator.stage.fastfile.mount import FastFileMount
        from emulator.storage.local import LocalSource
        from emulator.request.spec import DataSourceSpec
        source = LocalSource({str(channel)!r})
        spec = DataSourceSpec("S3Prefix", {str(channel)!r})
        mount = FastFileMount(spec, source.entries(), Path({str(mountpoint)!r}), label={LABEL!r})
        mount.mount()
        print(mount.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert is_mounted(mountpoint)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    assert wait_for(lambda: not is_mounted(mountpoint))
    assert wait_for(lambda: process_gone(child_pid))


def test_stale_mount_is_found_and_force_unmounted(channel: Path, tmp_path: Path) -> None:
    mount = fastfile(channel, tmp_path / "jobs" / "job-1" / "mnt")
    mount.mount()
    try:
        assert find_stale_mounts(tmp_path) == []  # a live mount is not stale
        assert mount.pid is not None
        os.kill(mount.pid, signal.SIGKILL)
        assert wait_for(lambda: process_gone(mount.pid or 0))
        with pytest.raises(OSError) as caught:
            os.listdir(mount.mountpoint)
        assert caught.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
        assert find_stale_mounts(tmp_path) == [mount.mountpoint]
        assert find_stale_mounts(tmp_path / "jobs" / "job-2") == []
        force_unmount(mount.mountpoint)
        assert not is_mounted(mount.mountpoint)
        assert find_stale_mounts(tmp_path) == []
    finally:
        mount.unmount()
    assert mount.pid is None


# --------------------------------------------------------------------------- failures


def test_a_source_error_in_the_file_system_process_is_raised(tmp_path: Path) -> None:
    # The Source is rebuilt in the file system process; this URI is refused there.
    spec = DataSourceSpec("S3Prefix", "file://otherhost/data")
    mount = FastFileMount(spec, [], tmp_path / "mnt", label=LABEL)
    try:
        with pytest.raises(SourceError, match="file:///abs/path"):
            mount.mount()
    finally:
        mount.unmount()
    assert not is_mounted(tmp_path / "mnt")
    assert mount.pid is None


def test_a_file_system_process_that_cannot_load_libfuse_is_an_environment_problem(
    channel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUSE_LIBRARY_PATH", str(tmp_path / "no-libfuse3.so"))
    mount = fastfile(channel, tmp_path / "mnt")
    with pytest.raises(EnvironmentProblem, match="libfuse3"):
        mount.mount()
    assert not is_mounted(tmp_path / "mnt")
    assert mount.pid is None


def test_a_mount_point_that_is_a_file_is_refused(channel: Path, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(EnvironmentProblem, match="not a directory"):
        fastfile(channel, target).mount()


def test_mounting_twice_on_one_mount_point_is_refused(shared: tuple[Path, Path]) -> None:
    channel, mounted = shared
    with pytest.raises(EnvironmentProblem, match="already a FUSE mount point"):
        fastfile(channel, mounted).mount()


def test_a_too_small_cache_is_refused(channel: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="two blocks"):
        fastfile(channel, tmp_path / "mnt", cache_bytes=BLOCK)


def test_an_object_that_is_also_a_folder_shows_the_folder() -> None:
    tree = build_tree([Entry("a", "/x/a", 1), Entry("a/b", "/x/a/b", 2), Entry("c", "/x/c", 3)])
    assert tree.files == {"/a/b": 1, "/c": 2}
    assert tree.dirs == {"/": ["a", "c"], "/a": ["b"]}
    assert tree.subdirs == {"/": 1, "/a": 0}


# --------------------------------------------------------------------------- block cache


class CountingSource(LocalSource):
    """LocalSource that counts read_range calls and can hold them until released."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.calls: list[tuple[str, int, int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.failures = 0
        self._lock = threading.Lock()

    def read_range(self, entry: Entry, offset: int, length: int) -> bytes:
        self.gate.wait()
        with self._lock:
            self.calls.append((entry.relative_path, offset, length))
            if self.failures:
                self.failures -= 1
                raise SourceError("injected failure")
        return super().read_range(entry, offset, length)


@pytest.fixture
def counting(tmp_path: Path) -> tuple[CountingSource, Entry, bytes]:
    channel = make_channel(tmp_path / "src", {"data.bin": 10 * 4096 + 5})
    source = CountingSource(str(channel))
    (entry,) = source.entries()
    return source, entry, (channel / "data.bin").read_bytes()


def test_concurrent_reads_of_one_block_fetch_it_once(
    counting: tuple[CountingSource, Entry, bytes],
) -> None:
    source, entry, data = counting
    cache = BlockCache(source, block_size=4096, capacity_bytes=16 * 4096)
    source.gate.clear()
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.block(0, entry, 3))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: cache.stats().joins == 7)
    source.gate.set()
    for thread in threads:
        thread.join()
    assert results == [data[3 * 4096 : 4 * 4096]] * 8
    assert source.calls == [("data.bin", 3 * 4096, 4096)]
    cache.close()


def test_time_spent_waiting_for_fetches_is_counted(
    counting: tuple[CountingSource, Entry, bytes],
) -> None:
    source, entry, data = counting
    cache = BlockCache(source, block_size=4096, capacity_bytes=16 * 4096)
    source.gate.clear()
    reader = threading.Thread(target=cache.block, args=(0, entry, 2))
    reader.start()
    time.sleep(0.2)  # the reader is blocked on the gated fetch all this time
    source.gate.set()
    reader.join()
    waited = cache.stats().waited_us
    assert 200_000 <= waited < 10_000_000
    assert cache.block(0, entry, 2) == data[2 * 4096 : 3 * 4096]  # a hit: no waiting
    assert cache.stats().waited_us - waited < 100_000
    cache.close()


def test_sequential_reads_prefetch_a_growing_window(
    counting: tuple[CountingSource, Entry, bytes],
) -> None:
    source, entry, data = counting
    cache = BlockCache(source, block_size=4096, capacity_bytes=64 * 4096, readahead_blocks=4)
    handle = ReadHandle(cache, 0, entry)
    assert handle.read(0, 100) == data[:100]
    assert wait_for(lambda: cache.stats().fetches == 2)  # block 0, and block 1 read ahead
    out = bytearray(data[:100])
    for offset in range(100, len(data), 1000):
        out += handle.read(offset, 1000)
    assert bytes(out) == data
    assert wait_for(lambda: not cache._pending)
    assert sorted(offset for _, offset, _ in source.calls) == [i * 4096 for i in range(11)]
    assert cache.stats().prefetches >= 8
    cache.close()


def test_files_opened_in_listing_order_get_the_next_first_block_early(tmp_path: Path) -> None:
    channel = make_channel(tmp_path / "src", {f"part-{n}": 3 * 4096 for n in range(4)})
    source = CountingSource(str(channel))
    cache = BlockCache(source, block_size=4096, capacity_bytes=64 * 4096)
    operations = FastFileOperations(source.entries(), cache, lambda: None)
    try:
        operations.open("/part-0", os.O_RDONLY)
        operations.open("/part-1", os.O_RDONLY)
        assert wait_for(lambda: len(source.calls) == 2)
        assert sorted(source.calls) == [("part-1", 0, 4096), ("part-2", 0, 4096)]
        # Out of order (a shuffled reader): nothing is fetched ahead.
        operations.open("/part-0", os.O_RDONLY)
        operations.open("/part-2", os.O_RDONLY)
        time.sleep(0.2)
        assert len(source.calls) == 2
        assert cache.stats().prefetches == 2
    finally:
        cache.close()


def fetched(source: CountingSource) -> set[tuple[str, int]]:
    """(file, block) of every fetch once none is pending (blocks of 4096 bytes)."""
    return {(name, offset // 4096) for name, offset, _ in source.calls}


def test_a_file_read_to_its_end_in_listing_order_reads_ahead_into_the_next_ones(
    tmp_path: Path,
) -> None:
    channel = make_channel(tmp_path / "src", {f"part-{n}": 3 * 4096 for n in range(4)})
    source = CountingSource(str(channel))
    entries = source.entries()
    cache = BlockCache(source, block_size=4096, capacity_bytes=64 * 4096, readahead_blocks=4)
    try:
        handle = ReadHandle(cache, 0, entries[0], entries)
        for block in range(3):
            handle.read(block * 4096, 4096)
        assert wait_for(lambda: not cache._pending)
        # The window (1, 2, then 4 blocks) runs on past the end: the next file, and the first
        # block of the one after.
        assert fetched(source) == {
            *((f"part-{n}", b) for n in (0, 1) for b in range(3)),
            ("part-2", 0),
        }
        # The next file starts with the full window: its first read reaches into part-2.
        ReadHandle(cache, 1, entries[1], entries).read(0, 100)
        assert wait_for(lambda: ("part-2", 1) in fetched(source))
    finally:
        cache.close()


def test_a_reader_stopping_early_in_each_file_never_reads_ahead_into_the_next(
    tmp_path: Path,
) -> None:
    channel = make_channel(tmp_path / "src", {f"part-{n}": 3 * 4096 for n in range(4)})
    source = CountingSource(str(channel))
    entries = source.entries()
    cache = BlockCache(source, block_size=4096, capacity_bytes=64 * 4096, readahead_blocks=4)
    try:
        for file_id in range(4):
            ReadHandle(cache, file_id, entries[file_id], entries).read(0, 1000)
        assert wait_for(lambda: not cache._pending)
        # Each file's first block, and its second read ahead: never the next file's.
        assert fetched(source) == {(f"part-{n}", b) for n in range(4) for b in (0, 1)}
        # Without the listing (a file opened out of order) the end of a file is the end.
        cache2 = BlockCache(source, block_size=4096, capacity_bytes=64 * 4096)
        source.calls.clear()
        handle = ReadHandle(cache2, 3, entries[3])
        for block in range(3):
            handle.read(block * 4096, 4096)
        assert wait_for(lambda: not cache2._pending)
        assert fetched(source) == {("part-3", b) for b in range(3)}
        cache2.close()
    finally:
        cache.close()


class PatternSource(CountingSource):
    """Synthesized bytes (any size, no file), counted like CountingSource."""

    def read_range(self, entry: Entry, offset: int, length: int) -> bytes:
        with self._lock:
            self.calls.append((entry.relative_path, offset, length))
        return pattern(offset, min(length, entry.size - offset))


def pattern(offset: int, length: int) -> bytes:
    return bytes((i * 7 + i // 4096) % 251 for i in range(offset, offset + length))


def test_late_reads_just_behind_a_sequential_reader_stay_cached(tmp_path: Path) -> None:
    # Kernel read-ahead requests arrive out of order: a read in the block just left must
    # not find it evicted, even with a budget of three blocks.
    block = 4 * 1024 * 1024
    source = PatternSource(str(tmp_path))
    entry = Entry("big", "big", 8 * block)
    cache = BlockCache(source, block_size=block, capacity_bytes=3 * block, readahead_blocks=4)
    handle = ReadHandle(cache, 0, entry)
    for index in range(4):
        assert handle.read(index * block, 100) == pattern(index * block, 100)
        assert wait_for(lambda: not cache._pending)
    calls = len(source.calls)
    assert handle.read(3 * block - 100, 100) == pattern(3 * block - 100, 100)
    assert len(source.calls) == calls
    assert sorted(offset // block for _, offset, _ in source.calls) == [0, 1, 2, 3, 4]
    cache.close()


def test_random_reads_do_not_read_ahead(counting: tuple[CountingSource, Entry, bytes]) -> None:
    source, entry, data = counting
    cache = BlockCache(source, block_size=4096, capacity_bytes=64 * 4096, readahead_blocks=4)
    handle = ReadHandle(cache, 0, entry)
    for block in (5, 2, 9, 7):
        assert handle.read(block * 4096 + 10, 50) == data[block * 4096 + 10 : block * 4096 + 60]
    assert cache.stats().prefetches == 0
    assert len(source.calls) == 4
    cache.close()


def test_the_cache_stays_within_its_budget(counting: tuple[CountingSource, Entry, bytes]) -> None:
    source, entry, data = counting
    cache = BlockCache(source, block_size=4096, capacity_bytes=3 * 4096, readahead_blocks=0)
    for block in [0, 1, 2, 3, 4, 0, 5, 6, 1]:
        assert cache.block(0, entry, block) == data[block * 4096 : (block + 1) * 4096]
        assert cache.stats().cached_bytes <= 3 * 4096
    assert cache.stats().evictions == 6
    cache.close()


def test_failed_fetches_are_not_cached(counting: tuple[CountingSource, Entry, bytes]) -> None:
    source, entry, data = counting
    cache = BlockCache(source, block_size=4096, capacity_bytes=4 * 4096)
    source.failures = 1
    with pytest.raises(SourceError, match="injected"):
        cache.block(0, entry, 0)
    assert cache.block(0, entry, 0) == data[:4096]
    cache.close()


def test_an_object_shorter_than_listed_is_an_error(
    counting: tuple[CountingSource, Entry, bytes],
) -> None:
    source, entry, _ = counting
    cache = BlockCache(source, block_size=4096, capacity_bytes=4 * 4096)
    longer = Entry(entry.relative_path, entry.location, entry.size + 10)
    with pytest.raises(SourceError, match="changed during the job"):
        cache.block(0, longer, 10)
    cache.close()
