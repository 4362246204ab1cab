"""A non-root user of the docker group runs the emulator: the files a root training container
writes into its bind mounts (root-owned on the host) must not outlive the job's work dir, nor a
dead emulator's work dir once ``emulator prune`` runs. A user outside the group is told what to
do about the socket that refuses it.

Real: a user is created for the test (and deleted after), added to the ``docker`` group, and
the CLI runs as that user (``runuser``) with the probe image (busybox, root).
"""

from __future__ import annotations

import json
import os
import subprocess

import docker

from emulator.engine import LABEL_JOB
from emulator.run.workdir import IMAGE_FILE, OWNER_FILE, WORK_DIR_PREFIX
from tests.fixtures.jobs import PROBE, channel, probe_request, read_archive, unique_name
from tests.fixtures.nonroot import User, needs_root_tools, python_for

pytestmark = needs_root_tools

# What a root training container leaves: root-owned directories holding files, in a File
# channel's directory and in /opt/ml/model (where they must still reach model.tar.gz).
ROOT_WRITER = (
    "/usr/local/bin/probe train"
    " && mkdir -p /opt/ml/input/data/train/by-root/deeper"
    " && echo scratch > /opt/ml/input/data/train/by-root/deeper/file"
    " && mkdir -p /opt/ml/model/by-root"
    " && echo weights > /opt/ml/model/by-root/weights"
)


def labelled(job: str) -> list[str]:
    client = docker.from_env()
    try:
        selector: dict[str, str | list[str] | bool] = {"label": f"{LABEL_JOB}={job}"}
        found = [f"container {c.name}" for c in client.containers.list(all=True, filters=selector)]
        found += [f"network {n.name}" for n in client.networks.list(filters=selector)]
    finally:
        client.close()
    return found


def test_root_owned_files_are_removed_for_a_non_root_user(
    user: User, python: tuple[list[str], dict[str, str]]
) -> None:
    interpreter, env = python
    request = probe_request(
        user.output,
        AlgorithmSpecification={
            "TrainingImage": PROBE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["/bin/sh", "-c", ROOT_WRITER],
        },
        InputDataConfig=[channel("train", user.root / "data/train")],
    )
    job = request["TrainingJobName"]
    request_file = user.root / "request.json"
    request_file.write_text(json.dumps(request))
    os.chown(request_file, user.uid, user.gid)

    result = user.run(
        "-m", "emulator", "run", "--json", str(request_file), python=interpreter, env=env
    )

    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(result.stdout)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    model = read_archive(user.output / job / "output" / "model.tar.gz")
    assert model["by-root/weights"] == b"weights\n"
    assert model["probe/uid"] == b"0\n"  # the training container did run as root
    assert "./train/a.csv" in model["probe/data.sha256"].decode()
    assert list(user.tmp.glob(f"{WORK_DIR_PREFIX}*")) == []
    assert "sudo rm -rf" not in result.stderr
    assert labelled(job) == []


def test_prune_removes_a_dead_emulators_root_owned_files(
    user: User, python: tuple[list[str], dict[str, str]]
) -> None:
    interpreter, env = python
    job = unique_name("dead")
    work = user.tmp / f"{WORK_DIR_PREFIX}{job}-abc123"
    (work / "algo-1" / "model").mkdir(parents=True)
    os.chown(work, user.uid, user.gid)
    os.chown(work / "algo-1", user.uid, user.gid)
    (work / "algo-1" / "model" / "weights").write_text("root's\n")  # model/ stays root's
    dead = subprocess.Popen(["true"])
    dead.wait()
    for name, content in ((OWNER_FILE, str(dead.pid)), (IMAGE_FILE, PROBE)):
        (work / name).write_text(content)
        os.chown(work / name, user.uid, user.gid)

    result = user.run("-m", "emulator", "prune", python=interpreter, env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert not work.exists(), result.stdout + result.stderr
    assert f"removed work dir {work}" in result.stdout
    assert labelled(job) == []


def test_a_user_the_engine_socket_refuses_is_told_to_join_the_docker_group(
    outsider: User,
) -> None:
    interpreter, env = python_for(outsider)
    command = ["-m", "emulator", "run", "--image", PROBE, "--output", str(outsider.output)]

    result = outsider.run(*command, python=interpreter, env=env)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "permission denied on its socket" in result.stderr, result.stderr
    assert f"refuses the user running the emulator ({outsider.name})" in result.stderr
    assert "usermod -aG docker" in result.stderr
    assert "No Docker engine answers" not in result.stderr  # it does answer: not to this user
    assert "Traceback" not in result.stderr
