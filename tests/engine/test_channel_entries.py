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
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.entries import DATA, make_odd_tree
from tests.fixtures.jobs import PROBE, JobRunner, channel, probe_request
from tests.fixtures.nonroot import User

MakeFiles = Callable[[dict[str, bytes]], Path]


def odd_channel(make_files: MakeFiles) -> Path:
    root = make_files({})
    shutil.rmtree(root)
    return make_odd_tree(root)


def assert_notice(jobs: JobRunner, root: Path) -> None:
    notices = [n for n in jobs.notices if n.startswith("Channel train: skipped")]
    assert len(notices) == 1, jobs.notices
    assert "6 entries that are not regular files" in notices[0]
    assert "dangling symlink dangling, FIFO fifo, symlink loop self, socket sock" in notices[0]
    assert "and 1 more" in notices[0]
    assert str(root) in notices[0]


@pytest.mark.docker
def test_a_file_channel_copies_the_data_and_says_what_it_skipped(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    root = odd_channel(make_files)
    record = jobs.run(jobs.request(InputDataConfig=[channel("train", root)]))
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    sums = jobs.probe(record, "data.sha256")
    assert sorted(line.split("  ")[1] for line in sums.splitlines()) == [
        f"./train/{name}" for name in sorted(DATA)
    ]
    assert_notice(jobs, root)


@pytest.mark.docker
def test_a_pipe_channel_streams_the_data_and_says_what_it_skipped(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    root = odd_channel(make_files)
    request = jobs.request(
        AlgorithmSpecification={
            "TrainingImage": PROBE,
            "TrainingInputMode": "Pipe",
            "ContainerEntrypoint": [
                "sh",
                "-c",
                "cat /opt/ml/input/data/train_0 > /opt/ml/model/stream",
            ],
        },
        InputDataConfig=[channel("train", root)],
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert jobs.model(record)["stream"] == b"".join(DATA[name] for name in sorted(DATA))
    assert_notice(jobs, root)


@pytest.mark.docker
@pytest.mark.fuse
def test_a_fastfile_channel_mounts_the_data_and_says_what_it_skipped(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    root = odd_channel(make_files)
    request = jobs.request(InputDataConfig=[channel("train", root, InputMode="FastFile")])
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    sums = jobs.probe(record, "data.sha256")
    assert sorted(line.split("  ")[1] for line in sums.splitlines()) == [
        f"./train/{name}" for name in sorted(DATA)
    ]
    assert_notice(jobs, root)


@pytest.mark.docker
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("runuser") is None,
    reason="a non-root user is needed (root reads every file); creating one needs root, "
    "useradd and runuser",
)
def test_the_cli_refuses_an_unreadable_file_with_exit_2(
    user: User,
    python: tuple[list[str], dict[str, str]],
) -> None:
    interpreter, env = python
    data = user.root / "data" / "train"
    secret = data / "secret.csv"
    secret.write_text("not yours\n")  # root's, 0600: the user cannot read it
    secret.chmod(0o600)
    request = probe_request(user.output, InputDataConfig=[channel("train", data)])
    job = request["TrainingJobName"]
    request_file = user.root / "request.json"
    request_file.write_text(json.dumps(request))
    os.chown(request_file, user.uid, user.gid)

    # FastFile lists the same way; this user cannot open /dev/fuse, refused before that.
    for mode in ("File", "Pipe"):
        result = user.run(
            "-m", "emulator", "run", str(request_file), "--input-mode", mode,
            python=interpreter, env=env,
        )  # fmt: skip
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"{secret} (file: permission denied)" in result.stderr
        assert "chmod a+r" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (user.output / job).exists()  # nothing started
    assert list(user.tmp.iterdir()) == []
    described = user.run("-m", "emulator", "describe", job, python=interpreter, env=env)
    assert described.returncode == 2  # no record
