"""A job's synced folders together (run/checkpointing.job_checkpoints): checkpoints,
TensorBoard and debugger output, one observer and one worker for all of them."""

from __future__ import annotations

import threading
from pathlib import Path

from watchdog.observers.api import BaseObserver

from emulator.checkpoints.files import scan
from emulator.plan.layout import HostLayout
from emulator.progress import NO_PROGRESS
from emulator.request.spec import JobSpec
from emulator.request.validation import parse_request
from emulator.run.checkpointing import NoCheckpoints, job_checkpoints
from emulator.storage.local_folder import temporary_owner
from tests.fixtures.jobs import probe_request
from tests.fixtures.polling import wait_until


def tree(root: Path) -> dict[str, bytes]:
    if not root.is_dir():
        return {}
    return {
        name: (root / name).read_bytes()
        for name in scan(root)[0]
        if temporary_owner(Path(name).name) is None
    }


def write(root: Path, files: dict[str, bytes]) -> None:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


def sync_threads() -> tuple[int, int]:
    """(sync workers, watchdog observers) running now."""
    threads = threading.enumerate()
    workers = sum(thread.name == "checkpoint-sync" for thread in threads)
    observers = sum(isinstance(thread, BaseObserver) for thread in threads)
    return workers, observers


def two_host_job(tmp_path: Path) -> tuple[JobSpec, list[HostLayout]]:
    spec = parse_request(
        probe_request(
            tmp_path / "model-out",
            TrainingJobName="several",
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1},
            CheckpointConfig={"S3Uri": str(tmp_path / "ckpt")},
            TensorBoardOutputConfig={"S3OutputPath": str(tmp_path / "tb")},
            DebugHookConfig={"S3OutputPath": f"file://{tmp_path / 'dbg'}", "LocalPath": "/dbg"},
        )
    )
    layouts = [HostLayout(tmp_path / "work" / host.name, host) for host in spec.resources.hosts()]
    for layout in layouts:
        layout.create(spec)
    return spec, layouts


def test_every_folder_of_a_job_is_synced_by_one_observer_and_one_worker(tmp_path: Path) -> None:
    spec, layouts = two_host_job(tmp_path)
    write(tmp_path / "ckpt", {"epoch-1.pt": b"resume from me"})
    tensorboard = tmp_path / "tb" / "several" / "tensorboard-output"
    debug = tmp_path / "dbg" / "several" / "debug-output"
    write(tensorboard, {"old.tfevents": b"an earlier round's"})
    notices: list[str] = []
    before = sync_threads()
    with job_checkpoints(spec, layouts, notices.append, NO_PROGRESS, None) as syncs:
        syncs.restore()
        for layout in layouts:  # checkpoints restored; upload-only folders never are
            assert tree(layout.checkpoint_dir) == {"epoch-1.pt": b"resume from me"}
            assert tree(layout.root / "output" / "tensorboard") == {}
            assert tree(layout.root / "synced-1") == {}
        syncs.start()
        assert sync_threads() == (before[0] + 1, before[1] + 1)
        first, second = layouts
        write(first.root / "output" / "tensorboard", {"run/events.1": b"tb1"})
        write(second.root / "synced-1", {"tensors/step-1": b"dbg2"})
        write(first.checkpoint_dir, {"epoch-2.pt": b"two"})
        wait_until(lambda: "run/events.1" in tree(tensorboard))  # while the job runs
        wait_until(lambda: "tensors/step-1" in tree(debug))
        wait_until(lambda: "epoch-2.pt" in tree(tmp_path / "ckpt"))
        (first.root / "output" / "tensorboard" / "run" / "events.1").unlink()
        write(first.root / "output" / "tensorboard", {"run/events.2": b"tb2"})
    assert sync_threads() == before
    assert tree(tensorboard) == {
        "old.tfevents": b"an earlier round's",
        "run/events.1": b"tb1",  # deleted in the container, kept (upload-only)
        "run/events.2": b"tb2",
    }
    assert tree(debug) == {"tensors/step-1": b"dbg2"}
    assert tree(tmp_path / "ckpt") == {"epoch-1.pt": b"resume from me", "epoch-2.pt": b"two"}
    assert notices == ["Restored 1 checkpoint file(s) (14 bytes) from " + str(tmp_path / "ckpt")]


def test_a_job_without_synced_folders_starts_no_thread(tmp_path: Path) -> None:
    spec = parse_request(probe_request(tmp_path / "model-out"))
    layout = HostLayout(tmp_path / "algo-1", spec.resources.hosts()[0])
    syncs = job_checkpoints(spec, [layout], print, NO_PROGRESS, None)
    assert isinstance(syncs, NoCheckpoints)
    before = sync_threads()
    with syncs:
        syncs.restore()
        syncs.start()
        assert sync_threads() == before
