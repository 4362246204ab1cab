"""copy_files: many local files into a fresh tree, byte-exact, by the kernel where it can."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from emulator.storage import copying
from emulator.storage.copying import FileCopy, copy_files
from tests.fixtures.s3 import RecordingProgress


class CopyFailed(Exception):
    pass


class SizeChanged(Exception):
    pass


def failure(copy: FileCopy, exc: OSError) -> Exception:
    return CopyFailed(f"{copy.source}: {exc.strerror}")


def size_changed(copy: FileCopy, copied: int) -> Exception:
    return SizeChanged(f"{copy.source}: {copied} of {copy.size}")


def copy(copies: list[FileCopy], progress: RecordingProgress | None = None) -> None:
    copy_files(
        copies,
        progress=progress or RecordingProgress(),
        failure=failure,
        size_changed=size_changed,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_file_arrives_byte_exact_in_folders_made_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(copying, "CHUNK", 4096)  # the multi-chunk file takes many rounds
    files = {
        "empty": b"",
        "a/small.bin": b"abc",
        "a/b/c/deep.bin": os.urandom(10_000),
        "multi-chunk.bin": os.urandom(4096 * 25 + 7),
        **{f"many/{index:04}": index.to_bytes(4, "little") * 1024 for index in range(300)},
    }
    source, target = tmp_path / "source", tmp_path / "target"
    for name, content in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(content)
    progress = RecordingProgress()

    copy(
        [FileCopy(str(source / n), str(target / n), len(c)) for n, c in files.items()],
        progress,
    )

    assert {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()} == set(
        files
    )
    assert all(digest(target / name) == digest(source / name) for name in files)
    assert progress.bytes == sum(len(content) for content in files.values())
    assert progress.objects == len(files)


def test_a_file_the_kernel_cannot_copy_is_read_and_written(tmp_path: Path) -> None:
    # procfs refuses copy_file_range (EXDEV) or reports nothing: read/write takes over.
    content = Path("/proc/self/mounts").read_bytes()
    assert content
    target = tmp_path / "mounts"
    copy([FileCopy("/proc/self/mounts", str(target), len(content))])
    # The mount table of the copying process, which is this one: the same lines.
    assert target.read_bytes().splitlines()[0] == content.splitlines()[0]


def test_a_copy_across_file_systems_is_byte_exact(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no tmpfs at /dev/shm")
    content = os.urandom(3 * 1024 * 1024 + 5)
    source = shm / f"copying-{os.getpid()}"
    source.write_bytes(content)
    try:
        copy([FileCopy(str(source), str(tmp_path / "copy"), len(content))])
    finally:
        source.unlink()
    assert (tmp_path / "copy").read_bytes() == content


def test_a_file_of_another_size_than_listed_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "grew").write_bytes(b"0123456789")
    with pytest.raises(SizeChanged, match="10 of 4"):
        copy([FileCopy(str(tmp_path / "grew"), str(tmp_path / "out" / "grew"), 4)])


def test_a_failed_copy_raises_the_callers_error_and_leaves_the_rest(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    names = [f"f{index:04}" for index in range(2000)]
    for name in names:
        (source / name).write_bytes(b"x" * 1024)
    (source / names[0]).unlink()

    with pytest.raises(CopyFailed, match="f0000: No such file or directory"):
        copy([FileCopy(str(source / n), str(tmp_path / "out" / n), 1024) for n in names])

    copied = list((tmp_path / "out").iterdir())
    assert len(copied) < len(names) / 2, f"{len(copied)} files copied after the first error"
