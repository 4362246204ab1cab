"""FastFile on a local directory, real jobs: a directory that is exactly its listing is
bind-mounted read-only as it is and no FUSE file system is started (``FastFileMount.mount`` is
wrapped to record every mount); a directory with a link, or a sharded channel, is served by FUSE
as listed; a change to the directory during the job is seen (the view is live) and said in a
notice. When each view is used: emulator/stage/fastfile/localview.py (unit tests in
tests/unit/test_fastfile_localview.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.stage.fastfile import FastFileMount
from emulator.stage.fastfile.mounts import FSTYPE
from tests.fixtures.jobs import JobRunner, channel, python_reader_members

MakeFiles = Callable[[dict[str, bytes]], Path]
BUSYBOX = "sagemaker-emulator/busybox:latest"
DATA = "/opt/ml/input/data"

FILES = {
    "a.txt": b"alpha\n",
    "empty": b"",
    "sub/b.bin": os.urandom(70_000),
    "sub/deeper/c.txt": b"c" * 5000,
}


@pytest.fixture
def tree(make_files: MakeFiles) -> Path:
    return make_files(FILES)


@pytest.fixture
def fuse_started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """The mount point of every FastFile FUSE mount started while the test runs."""
    started: list[Path] = []
    original = FastFileMount.mount

    def mount(self: FastFileMount) -> None:
        started.append(self.mountpoint)
        original(self)

    monkeypatch.setattr(FastFileMount, "mount", mount)
    yield started


SEE = """
import errno, hashlib, json, os, stat
root = "/opt/ml/input/data/train"
found = {}
for folder, dirs, files in os.walk(root):
    for name in files:
        path = os.path.join(folder, name)
        info = os.lstat(path)
        with open(path, "rb") as f:
            found[os.path.relpath(path, root)] = [
                info.st_size, stat.S_ISREG(info.st_mode), hashlib.sha256(f.read()).hexdigest()
            ]
mount = [line.split()[2:4] for line in open("/proc/mounts") if line.split()[1] == root]
errors = {}
for name, attempt in {
    "create": lambda: open(f"{root}/new", "wb"),
    "append": lambda: open(f"{root}/a.txt", "ab"),
    "unlink": lambda: os.unlink(f"{root}/a.txt"),
    "mkdir": lambda: os.mkdir(f"{root}/made"),
    "chmod": lambda: os.chmod(f"{root}/a.txt", 0o777),
}.items():
    try:
        attempt()
        errors[name] = "succeeded"
    except OSError as exc:
        errors[name] = errno.errorcode[exc.errno]
config = json.load(open("/opt/ml/input/config/inputdataconfig.json"))
with open("/opt/ml/model/seen.json", "w") as out:
    json.dump({"found": found, "mount": mount, "errors": errors, "config": config}, out)
"""


def run_seeing(jobs: JobRunner, uri: Path, **members: Any) -> dict[str, Any]:
    request = jobs.request(
        InputDataConfig=[channel("train", uri)],
        **python_reader_members(SEE, "FastFile", 60, **members),
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert jobs.leftovers(request["TrainingJobName"]) == []
    return dict(json.loads(jobs.model(record)["seen.json"]))


def expected_view(files: dict[str, bytes]) -> dict[str, list[Any]]:
    return {
        name: [len(content), True, hashlib.sha256(content).hexdigest()]
        for name, content in files.items()
    }


@pytest.mark.docker
def test_a_job_reads_a_local_directory_through_a_read_only_bind_mount_without_fuse(
    jobs: JobRunner, tree: Path, fuse_started: list[Path]
) -> None:
    seen = run_seeing(jobs, tree)
    assert fuse_started == []  # no FUSE file system process at all
    assert seen["found"] == expected_view(FILES)
    ((fstype, options),) = seen["mount"]
    assert not fstype.startswith("fuse")
    assert options.split(",")[0] == "ro"
    assert set(seen["errors"].values()) == {"EROFS"}, seen["errors"]
    assert seen["config"]["train"]["TrainingInputMode"] == "FastFile"
    for name, content in FILES.items():
        assert (tree / name).read_bytes() == content


@pytest.mark.docker
@pytest.mark.fuse
def test_a_directory_with_a_link_is_served_by_fuse_as_listed(
    jobs: JobRunner, tree: Path, fuse_started: list[Path]
) -> None:
    (tree / "sub" / "link.bin").symlink_to("b.bin")
    seen = run_seeing(jobs, tree)
    assert len(fuse_started) == 1
    # The listing follows the link: a regular file with the target's bytes, as in File mode.
    assert seen["found"] == expected_view({**FILES, "sub/link.bin": FILES["sub/b.bin"]})
    assert seen["mount"] == [[FSTYPE, seen["mount"][0][1]]]
    assert seen["mount"][0][1].split(",")[0] == "ro"
    assert set(seen["errors"].values()) == {"EROFS"}, seen["errors"]


SHARD = (
    "host=$(hostname); "
    f'echo "$host mount $(awk \'$2 == "{DATA}/train" {{print $3}}\' /proc/mounts)"; '
    f'cd {DATA}/train && find . -type f | sort | sed "s|^|$host file |"'
)


@pytest.mark.docker
@pytest.mark.fuse
def test_a_sharded_channel_still_uses_fuse_and_each_host_sees_only_its_shard(
    jobs: JobRunner, tree: Path, fuse_started: list[Path]
) -> None:
    sharded = channel("train", tree)
    sharded["DataSource"]["S3DataSource"]["S3DataDistributionType"] = "ShardedByS3Key"
    request = jobs.request(
        AlgorithmSpecification={
            "TrainingImage": BUSYBOX,
            "TrainingInputMode": "FastFile",
            "ContainerEntrypoint": ["sh", "-c", SHARD],
        },
        InputDataConfig=[sharded],
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1},
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert len(fuse_started) == 2
    names = sorted(FILES)
    for index, host in enumerate(("algo-1", "algo-2")):
        lines = [line for logged, line in jobs.logs if logged == host]
        assert f"{host} mount {FSTYPE}" in lines
        files = [line.split(" file ./", 1)[1] for line in lines if " file ./" in line]
        assert files == names[index::2]


WATCH = (
    "echo ready; i=0; "
    f"while [ ! -e {DATA}/train/new.txt ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; "
    f"ls {DATA}/train"
)


@pytest.mark.docker
def test_a_directory_changed_during_the_job_is_said_in_a_notice(
    jobs: JobRunner, tree: Path, fuse_started: list[Path]
) -> None:
    lines: list[str] = []

    def sink(host: str, line: str) -> None:
        lines.append(line)
        if line == "ready":  # the container runs: change the directory under it
            (tree / "new.txt").write_bytes(b"added during the job")

    request = jobs.request(
        AlgorithmSpecification={
            "TrainingImage": BUSYBOX,
            "TrainingInputMode": "FastFile",
            "ContainerEntrypoint": ["sh", "-c", WATCH],
        },
        InputDataConfig=[channel("train", tree)],
    )
    record = jobs.run(request, log_sink=sink)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert fuse_started == []
    assert "new.txt" in lines  # a bind mount is live: the container saw it
    changed = [notice for notice in jobs.notices if "changed while the job ran" in notice]
    assert changed == [
        f"Channel train: {tree} changed while the job ran (1 added); a FastFile channel on a "
        "local directory is a read-only bind mount of it, so the container may have seen the "
        "changes, where SageMaker's view is the prefix as it was when the job started"
    ]
