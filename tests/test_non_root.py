"""A non-root user of the docker group runs the emulator: the files a root training container
writes into its bind mounts (root-owned on the host) must not outlive the job's work dir, nor a
dead emulator's work dir once ``emulator prune`` runs.

Real: a user is created for the test (and deleted after), added to the ``docker`` group, and
the CLI runs as that user (``runuser``) with the probe image (busybox, root).
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from emulator.engine import LABEL_JOB
from emulator.run.workdir import IMAGE_FILE, OWNER_FILE, WORK_DIR_PREFIX
from tests.fixtures.jobs import PROBE, channel, probe_request, read_archive, unique_name

SOCKET = Path("/var/run/docker.sock")
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("runuser") is None,
    reason="creating a test user needs root, useradd and runuser",
)

# What a root training container leaves: root-owned directories holding files, in a File
# channel's directory and in /opt/ml/model (where they must still reach model.tar.gz).
ROOT_WRITER = (
    "/usr/local/bin/probe train"
    " && mkdir -p /opt/ml/input/data/train/by-root/deeper"
    " && echo scratch > /opt/ml/input/data/train/by-root/deeper/file"
    " && mkdir -p /opt/ml/model/by-root"
    " && echo weights > /opt/ml/model/by-root/weights"
)


@dataclass
class User:
    name: str
    uid: int
    gid: int
    root: Path  # owned by the user: home, EMULATOR_HOME, TMPDIR, data, output

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def output(self) -> Path:
        return self.root / "output"

    def run(
        self, *args: str, python: list[str], env: dict[str, str]
    ) -> subprocess.CompletedProcess[str]:
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root / "home"),
            "EMULATOR_HOME": str(self.root / "emulator-home"),
            "TMPDIR": str(self.tmp),
            **env,
        }
        command = ["runuser", "-u", self.name, "--", "env", "-i"]
        command += [f"{key}={value}" for key, value in environment.items()]
        return subprocess.run(
            [*command, *python, *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=self.root,
        )


@pytest.fixture
def docker_socket_for_group() -> Iterator[None]:
    """The socket readable and writable by the docker group for the test; restored after."""
    try:
        docker_gid = grp.getgrnam("docker").gr_gid
    except KeyError:
        pytest.skip("there is no docker group to put the test user in")
    info = SOCKET.stat()
    if not stat.S_ISSOCK(info.st_mode):
        pytest.skip(f"{SOCKET} is not the engine's socket")
    wanted = stat.S_IRGRP | stat.S_IWGRP
    changed = info.st_gid != docker_gid or info.st_mode & wanted != wanted
    if changed:
        os.chown(SOCKET, -1, docker_gid)
        os.chmod(SOCKET, stat.S_IMODE(info.st_mode) | wanted)
    try:
        yield
    finally:
        if changed:
            os.chown(SOCKET, -1, info.st_gid)
            os.chmod(SOCKET, stat.S_IMODE(info.st_mode))


@pytest.fixture
def user(docker_socket_for_group: None) -> Iterator[User]:
    name = f"smemu{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix="emulator-non-root-"))
    subprocess.run(
        ["useradd", "--no-create-home", "--home-dir", str(root / "home"), "-G", "docker", name],
        check=True,
        capture_output=True,
    )
    try:
        uid = int(subprocess.run(["id", "-u", name], check=True, capture_output=True).stdout)
        gid = int(subprocess.run(["id", "-g", name], check=True, capture_output=True).stdout)
        for sub in ("home", "emulator-home", "tmp", "output", "data/train"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "data/train/a.csv").write_text("1,2,3\n")
        for path in (root, *root.rglob("*")):
            os.chown(path, uid, gid)
        yield User(name, uid, gid, root)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)  # we are root


@pytest.fixture
def python(user: User) -> tuple[list[str], dict[str, str]]:
    """The venv's interpreter when the user can run it; else (it lives under a home the user
    cannot enter) the system interpreter of the same version with the venv's packages."""
    probe = [sys.executable, "-c", "import emulator.cli"]
    if user.run(python=probe, env={}).returncode == 0:
        return [sys.executable], {}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin")
    if system is None:
        pytest.skip(f"{sys.executable} is not executable by other users and no system {version}")
    path = f"{REPO}:{sysconfig.get_paths()['purelib']}"
    if user.run(python=[system, "-c", "import emulator.cli"], env={"PYTHONPATH": path}).returncode:
        pytest.skip(f"neither {sys.executable} nor {system} can run the emulator as another user")
    return [system], {"PYTHONPATH": path}


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
