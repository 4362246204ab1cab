"""CheckpointSync without Docker: restore, continuous sync and final reconciliation against a
local directory and against moto (real HTTP); symlinks never followed; no threads left."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.checkpoints.files import fixed_size_file, open_below, scan
from emulator.checkpoints.sync import (
    DEBOUNCE_SECONDS,
    CheckpointSync,
    FolderSync,
    check_checkpoint_location,
)
from emulator.errors import SourceError
from emulator.request.spec import CheckpointSpec, JobSpec, ResourceSpec
from emulator.storage.local_folder import temporary_owner
from tests.fixtures.polling import wait_until
from tests.fixtures.s3 import S3Server, free_port

MiB = 1024 * 1024


def write(root: Path, files: dict[str, bytes]) -> None:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


def tree(root: Path) -> dict[str, bytes]:
    """The files below ``root``, without the sync's own in-flight writes (a temporary that is
    renamed into place between the listing and the read)."""
    if not root.is_dir():
        return {}
    return {
        name: (root / name).read_bytes()
        for name in scan(root)[0]
        if temporary_owner(Path(name).name) is None
    }


@pytest.fixture
def no_thread_leaks() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    wait_until(lambda: set(threading.enumerate()) <= before, timeout=5)


@pytest.fixture
def hosts(tmp_path: Path) -> dict[str, Path]:
    dirs = {name: tmp_path / "work" / name / "checkpoints" for name in ("algo-1", "algo-2")}
    for path in dirs.values():
        path.mkdir(parents=True)
    return dirs


def job_spec(uri: str) -> JobSpec:
    return JobSpec(
        name="job",
        image="image",
        input_mode="File",
        channels=(),
        output_path="/tmp/out",
        resources=ResourceSpec("ml.m5.large", 1),
        checkpoint=CheckpointSpec(uri),
    )


# -- a local location ---------------------------------------------------------------------------


def test_restore_copies_every_file_into_every_host(
    tmp_path: Path, hosts: dict[str, Path], no_thread_leaks: None
) -> None:
    store = tmp_path / "store"
    files = {"step-1.pt": b"one", "deep/er/state.json": b"{}", "empty": b""}
    write(store, files)
    notices: list[str] = []
    with CheckpointSync(CheckpointSpec(str(store)), hosts, notices.append) as sync:
        sync.restore()
        for root in hosts.values():
            assert tree(root) == files
            # A container running as another user can replace restored files.
            assert (root / "deep" / "er").stat().st_mode & 0o777 == 0o777
            assert (root / "step-1.pt").stat().st_mode & 0o777 == 0o666
    assert tree(store) == files  # nothing changed, nothing written
    assert any("Restored 3 checkpoint file(s)" in n for n in notices)


@pytest.mark.parametrize("location", ["missing", "empty"])
def test_a_missing_or_empty_location_restores_nothing(
    tmp_path: Path, hosts: dict[str, Path], location: str
) -> None:
    store = tmp_path / location
    if location == "empty":
        store.mkdir()
    with CheckpointSync(CheckpointSpec(store.as_uri()), hosts) as sync:
        sync.restore()
        assert all(tree(root) == {} for root in hosts.values())
        write(hosts["algo-1"], {"new.pt": b"x"})
    assert tree(store) == {"new.pt": b"x"}  # created at the end


def test_changes_are_synced_while_the_job_runs(
    tmp_path: Path, hosts: dict[str, Path], no_thread_leaks: None
) -> None:
    store = tmp_path / "store"
    write(store, {"old.pt": b"old", "keep/me.pt": b"kept"})
    root = hosts["algo-1"]
    with CheckpointSync(CheckpointSpec(str(store)), {"algo-1": root}) as sync:
        sync.restore()
        sync.start()
        write(root, {"step-2.pt": b"two", "sub/dir/x.bin": os.urandom(1000)})
        wait_until(lambda: {"step-2.pt", "sub/dir/x.bin"} <= tree(store).keys())
        assert tree(store)["step-2.pt"] == b"two"
        started = time.monotonic()
        (root / "step-2.pt").write_bytes(b"two, rewritten")
        wait_until(lambda: tree(store).get("step-2.pt") == b"two, rewritten")
        assert time.monotonic() - started >= DEBOUNCE_SECONDS * 0.8  # debounced, not at once
        (root / "old.pt").unlink()
        (root / "sub" / "dir" / "x.bin").unlink()
        wait_until(lambda: "old.pt" not in tree(store) and "sub/dir/x.bin" not in tree(store))
        assert not (store / "sub").exists()  # folders left empty go too
        assert tree(store) == tree(root)
    assert tree(store) == {"keep/me.pt": b"kept", "step-2.pt": b"two, rewritten"}


def test_the_final_reconciliation_catches_what_no_event_reported(
    tmp_path: Path, hosts: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    write(store, {"a": b"a", "b": b"b"})
    root = hosts["algo-1"]
    sync = CheckpointSync(CheckpointSpec(str(store)), {"algo-1": root})
    sync.restore()  # never started: no observer saw these
    (root / "a").unlink()
    (root / "b").write_bytes(b"bb")
    write(root, {"c/d": b"cd"})
    (root / "c").rename(root / "e")
    sync.finish()
    assert tree(store) == {"b": b"bb", "e/d": b"cd"}
    sync.finish()  # again: nothing


def test_folders_made_whole_and_moved_around_are_synced_without_warnings(
    tmp_path: Path, hosts: dict[str, Path], no_thread_leaks: None
) -> None:
    """watchdog warns on its own thread when it watches a moved folder twice; the suite's
    "error" filter would stop that thread (a PytestUnhandledThreadExceptionWarning)."""
    store = tmp_path / "store"
    root = hosts["algo-1"]
    with CheckpointSync(CheckpointSpec(str(store)), {"algo-1": root}) as sync:
        sync.restore()
        sync.start()
        for step in range(20):
            made, copy, moved = root / f"made-{step}", root / f"copy-{step}", root / "moved"
            write(made, {"x/y/file": b"x"})
            shutil.copytree(made, copy)
            copy.rename(moved)
            (moved / "x").rename(root / "inner")
            shutil.rmtree(made)
            (made / "x").mkdir(parents=True)
            (root / "inner").rename(made / "x" / "q")
            shutil.rmtree(moved)
        wait_until(lambda: tree(store) == tree(root))
    assert tree(store) == tree(root)
    assert tree(store)["made-19/x/q/y/file"] == b"x"


def test_a_file_still_being_written_is_synced_again_until_it_settles(
    tmp_path: Path, hosts: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    root = hosts["algo-1"]
    with CheckpointSync(CheckpointSpec(str(store)), {"algo-1": root}) as sync:
        sync.restore()
        sync.start()
        with (root / "growing.bin").open("wb") as out:
            for _ in range(30):  # 3 s of writes: synced on the way (MAX_DELAY), then at the end
                out.write(b"x" * 1000)
                out.flush()
                time.sleep(0.1)
            wait_until(lambda: (store / "growing.bin").exists())
            assert (store / "growing.bin").stat().st_size < 30_000
        wait_until(lambda: tree(store).get("growing.bin") == b"x" * 30_000)


def test_symlinks_and_special_files_are_never_followed_nor_synced(
    tmp_path: Path, hosts: dict[str, Path]
) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("the host's own file")
    secret_dir = tmp_path / "host-dir"
    write(secret_dir, {"key": b"secret"})
    store = tmp_path / "store"
    root = hosts["algo-1"]
    notices: list[str] = []
    with CheckpointSync(CheckpointSpec(str(store)), {"algo-1": root}, notices.append) as sync:
        sync.restore()
        sync.start()
        (root / "link").symlink_to(secret)
        (root / "linked-dir").symlink_to(secret_dir)
        os.mkfifo(root / "fifo")
        write(root, {"real.pt": b"real"})
    assert tree(store) == {"real.pt": b"real"}
    assert not (store / "link").exists()
    assert any("not synced" in n and "link" in n for n in notices)


def test_open_below_refuses_a_symlink_anywhere_on_the_way(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, {"dir/file": b"ok"})
    write(tmp_path, {"outside/file": b"secret"})
    snapshot = open_below(root, "dir/file")
    assert snapshot is not None and snapshot.size == 2
    os.close(snapshot.fd)
    (root / "swapped").symlink_to(tmp_path / "outside")
    assert open_below(root, "swapped/file") is None
    (root / "file-link").symlink_to(tmp_path / "outside" / "file")
    assert open_below(root, "file-link") is None
    assert open_below(root, "gone") is None


def test_a_fixed_size_file_pads_a_file_that_shrank_and_cuts_one_that_grew(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    with fixed_size_file(os.open(path, os.O_RDONLY), 10) as reader:
        path.write_bytes(b"0123")  # truncated meanwhile
        assert reader.read() == b"0123" + bytes(6)
        reader.seek(2)
        assert reader.read(3) == b"23\0"
    with fixed_size_file(os.open(path, os.O_RDONLY), 2) as reader:
        path.write_bytes(b"0123456789")
        assert reader.read() == b"01"
        assert reader.seek(0, os.SEEK_END) == 2


def test_multi_host_jobs_sync_into_one_prefix_and_delete_only_their_own(
    tmp_path: Path, hosts: dict[str, Path], no_thread_leaks: None
) -> None:
    store = tmp_path / "store"
    write(store, {"restored.pt": b"r"})
    with CheckpointSync(CheckpointSpec(str(store)), hosts) as sync:
        sync.restore()
        sync.start()
        write(hosts["algo-1"], {"rank-0.pt": b"0", "shared.json": b"from 1"})
        write(hosts["algo-2"], {"rank-1.pt": b"1"})
        wait_until(lambda: {"rank-0.pt", "rank-1.pt", "shared.json"} <= tree(store).keys())
        # algo-1 prunes the restored checkpoint; algo-2 still holds its unchanged copy.
        (hosts["algo-1"] / "restored.pt").unlink()
        wait_until(lambda: "restored.pt" not in tree(store))
    assert tree(store) == {"rank-0.pt": b"0", "rank-1.pt": b"1", "shared.json": b"from 1"}


def test_a_failing_sync_is_reported_retried_and_fails_the_final_sync(
    tmp_path: Path, hosts: dict[str, Path], no_thread_leaks: None
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's parent should be")
    notices: list[str] = []
    sync = CheckpointSync(CheckpointSpec(str(blocker / "store")), hosts, notices.append)
    with pytest.raises(SourceError, match=r"checkpoint sync to .* failed"), sync:
        sync.restore()
        sync.start()
        write(hosts["algo-1"], {"x.pt": b"x"})
        wait_until(lambda: any("retrying" in n for n in notices))
    # With an error already on its way out, the final sync only reports.
    notices.clear()
    sync = CheckpointSync(CheckpointSpec(str(blocker / "store")), hosts, notices.append)
    with pytest.raises(KeyboardInterrupt), sync:
        sync.restore()
        write(hosts["algo-2"], {"y.pt": b"y"})
        raise KeyboardInterrupt
    assert any("failed" in n for n in notices)


def test_without_checkpoint_config_everything_is_a_no_op(
    tmp_path: Path, hosts: dict[str, Path]
) -> None:
    write(hosts["algo-1"], {"a.pt": b"a", "sub/b.pt": b"b"})
    before = {name: tree(root) for name, root in hosts.items()}
    listing = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    threads = set(threading.enumerate())
    notices: list[str] = []
    with CheckpointSync(None, hosts, notices.append) as sync:
        sync.restore()
        sync.start()
        assert set(threading.enumerate()) == threads  # no watcher, no sync worker
        write(hosts["algo-2"], {"late.pt": b"late"})  # would be synced, were there a store
    assert sync.store is None
    assert notices == []
    after = {name: tree(root) for name, root in hosts.items()}
    assert after == {**before, "algo-2": {"late.pt": b"late"}}  # nothing restored or removed
    listing.append(str((hosts["algo-2"] / "late.pt").relative_to(tmp_path)))
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == sorted(listing)
    spec = JobSpec("j", "i", "File", (), "/tmp", ResourceSpec("ml.m5.large", 1))
    assert spec.checkpoint is None
    check_checkpoint_location(spec)  # no location: nothing to check, no error


def test_a_local_location_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(SourceError, match="is not a directory"):
        check_checkpoint_location(job_spec(str(path)))
    check_checkpoint_location(job_spec(str(tmp_path / "new" / "dir")))  # created when needed


# -- S3 (moto) ----------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_restore_sync_and_reconcile(
    moto_s3: S3Server, hosts: dict[str, Path], no_thread_leaks: None
) -> None:
    bucket = moto_s3.new_bucket("ckpt")
    big = os.urandom(17 * MiB)  # above the multipart threshold
    moto_s3.put_objects(
        bucket,
        {
            "run/ckpt/step-1.pt": b"one",
            "run/ckpt/nested/ünï cödé.json": b"{}",
            "run/ckpt-old/stale.pt": b"not ours: a different folder",
        },
    )
    root = hosts["algo-1"]
    with CheckpointSync(CheckpointSpec(f"s3://{bucket}/run/ckpt"), {"algo-1": root}) as sync:
        sync.restore()
        assert tree(root) == {"step-1.pt": b"one", "nested/ünï cödé.json": b"{}"}
        sync.start()
        write(root, {"step-2.pt": b"two", "zero": b""})
        (root / "step-1.pt").unlink()
        wait_until(lambda: moto_s3.read_objects(bucket, "run/ckpt/").keys() == tree(root).keys())
        write(root, {"big.bin": big})
    final = moto_s3.read_objects(bucket, "run/ckpt/")
    assert final.keys() == {"step-2.pt", "nested/ünï cödé.json", "big.bin", "zero"}
    assert final["zero"] == b""
    assert hashlib.sha256(final["big.bin"]).digest() == hashlib.sha256(big).digest()
    etag = moto_s3.client.head_object(Bucket=bucket, Key="run/ckpt/big.bin")["ETag"]
    assert etag.strip('"').endswith("-2")  # multipart
    assert moto_s3.read_objects(bucket, "run/ckpt-old/") == {
        "stale.pt": b"not ours: a different folder"
    }


@pytest.mark.s3
def test_s3_empty_prefix_restores_nothing_and_a_missing_bucket_is_refused(
    moto_s3: S3Server, hosts: dict[str, Path]
) -> None:
    bucket = moto_s3.new_bucket("ckpt")
    check_checkpoint_location(job_spec(f"s3://{bucket}/nothing/yet"))
    with CheckpointSync(CheckpointSpec(f"s3://{bucket}/nothing/yet"), hosts) as sync:
        sync.restore()
        assert all(tree(root) == {} for root in hosts.values())
    with pytest.raises(SourceError, match=r"CheckpointConfig.S3Uri: .*bucket does not exist"):
        check_checkpoint_location(job_spec("s3://no-such-bucket-here/ckpt"))


@pytest.mark.s3
def test_s3_unreachable_endpoint_is_refused(
    moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(SourceError, match="cannot reach the S3 endpoint"):
        check_checkpoint_location(job_spec("s3://bucket/ckpt"))


def test_an_upload_only_folder_restores_nothing_and_keeps_what_the_container_deleted(
    tmp_path: Path, hosts: dict[str, Path], no_thread_leaks: None
) -> None:
    store = tmp_path / "tensorboard-output"
    write(store, {"earlier-run.tfevents": b"an earlier job's"})
    notices: list[str] = []
    sync = FolderSync(str(store), hosts, notices.append, label="TensorBoard output", restore=False)
    with sync:
        sync.restore()
        assert all(tree(root) == {} for root in hosts.values())  # nothing fetched
        sync.start()
        write(hosts["algo-1"], {"run/e.1": b"one", "scratch": b"tmp"})
        wait_until(lambda: "scratch" in tree(store))
        (hosts["algo-1"] / "scratch").unlink()
        write(hosts["algo-1"], {"run/e.2": b"two"})
    assert tree(store) == {
        "earlier-run.tfevents": b"an earlier job's",
        "run/e.1": b"one",
        "run/e.2": b"two",
        "scratch": b"tmp",  # deleted in the container, kept in the location
    }
    assert notices == []
