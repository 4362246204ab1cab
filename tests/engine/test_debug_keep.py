"""Kept jobs and post-mortem shells (issue 12): `emulator run --keep` leaves the exited
containers and the work dir whatever the ending (the network and everything else go),
`emulator list` shows the job kept, `emulator prune` leaves it, `emulator shell` looks inside a
host with its /opt/ml tree and environment, and `emulator rm` / `emulator prune --kept` leave
nothing. A job run without --keep keeps nothing and is refused by `shell` and `rm`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any

import docker
import pytest

from emulator import JobExists, api
from emulator.engine import LABEL_JOB
from emulator.engine.labels import LABEL_KEPT, LABEL_SHELL
from tests.fixtures.cli import EMULATOR, leftovers, start_cli_job
from tests.fixtures.jobs import BUSYBOX, JobRunner, probe_request, unique_name
from tests.fixtures.nonroot import User, needs_root_tools

pytestmark = pytest.mark.timeout(120)

FAILING = "echo nope > /opt/ml/output/failure; echo weights > /opt/ml/model/w.txt; exit 3"


def emulator(jobs: JobRunner, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`emulator ARGS` in a process of its own, with the jobs' state dir and work root, stdin
    piped (no terminal)."""
    env = jobs.cli_environ()
    return subprocess.run(
        [*EMULATOR, *args], input=stdin, env=env, capture_output=True, text=True, timeout=90
    )


def run_failing(jobs: JobRunner, name: str, *flags: str) -> subprocess.CompletedProcess[str]:
    data = jobs.work_root.parent / "data"
    data.mkdir(exist_ok=True)
    (data / "part-0.csv").write_text("1,2\n")
    return emulator(
        jobs,
        "run",
        "--image",
        BUSYBOX,
        "--job-name",
        name,
        "--output",
        str(jobs.output),
        "--entrypoint",
        "sh",
        "--entrypoint",
        "-c",
        "--entrypoint",
        FAILING,
        "--hyperparameter",
        "lr=0.5",
        "--channel",
        f"train={data}",
        "--stop-grace",
        "1",
        *flags,
    )


def containers(job: str) -> dict[str, dict[str, Any]]:
    """The job's containers by name: their labels and state."""
    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": f"{LABEL_JOB}={job}"})
        return {c.name: {"labels": c.labels, "status": c.status} for c in found}
    finally:
        client.close()


def busybox_job(jobs: JobRunner, script: str, **members: Any) -> dict[str, Any]:
    algorithm = {
        "TrainingImage": BUSYBOX,
        "TrainingInputMode": "File",
        "ContainerEntrypoint": ["sh", "-c", script],
    }
    return jobs.request(AlgorithmSpecification=algorithm, **members)


def test_a_kept_failed_job_is_inspected_with_shell_and_removed_with_rm(jobs: JobRunner) -> None:
    job = unique_name("kept")
    result = run_failing(jobs, job, "--instance-count", "2", "--keep")
    assert result.returncode == 1, result.stderr
    assert "Kept (--keep)" in result.stderr and f"emulator rm {job}" in result.stderr
    [work] = jobs.work_root.glob(f"sagemaker-emulator-{job}-*")

    # The exited containers and the work dir stay, labelled; the job network went.
    kept = containers(job)
    assert sorted(kept) == sorted(f"sm-{job}-{work.name[-8:]}-algo-{n}" for n in (1, 2))
    assert {c["status"] for c in kept.values()} == {"exited"}
    assert {c["labels"][LABEL_KEPT] for c in kept.values()} == {str(work)}
    assert sorted(leftovers(job, jobs.work_root)) == sorted(
        [*(f"container {name}" for name in kept), f"work dir {work}"]
    )
    assert (work / "algo-2" / "output" / "failure").read_text() == "nope\n"
    # The record and artifacts are written as always.
    assert api.describe(job, home=jobs.home)["TrainingJobStatus"] == "Failed"
    assert (jobs.output / job / "output" / "model.tar.gz").is_file()

    # `emulator list` shows it kept; --json keeps SageMaker's fields and adds "Kept".
    table = emulator(jobs, "list").stdout.splitlines()
    assert table[0].split()[-1] == "kept" and table[1].split()[-1] == "kept"
    [summary] = json.loads(emulator(jobs, "list", "--json").stdout)["TrainingJobSummaries"]
    assert summary["TrainingJobName"] == job and summary["TrainingJobStatus"] == "Failed"
    assert summary["Kept"] is True
    assert api.kept_jobs(home=jobs.home) == {job: work}

    # `emulator prune` leaves it, though the emulator that ran it is gone.
    pruned = emulator(jobs, "prune")
    assert pruned.returncode == 0, pruned.stderr
    assert sorted(containers(job)) == sorted(kept) and work.is_dir()

    # A shell in algo-2: its /opt/ml tree and environment; the exit status is the shell's.
    commands = (
        "cat /opt/ml/input/config/hyperparameters.json\n"
        "cat /opt/ml/output/failure\n"
        'echo "job=$TRAINING_JOB_NAME host=$(hostname)"\n'
        "ls /opt/ml/input/data/train /opt/ml/model\n"
        "exit 5\n"
    )
    shell = emulator(jobs, "shell", job, "--host", "algo-2", stdin=commands)
    assert shell.returncode == 5, shell.stderr
    assert json.loads(shell.stdout[: shell.stdout.index("}") + 1]) == {"lr": "0.5"}
    assert "nope\n" in shell.stdout
    assert f"job={job} host=algo-2\n" in shell.stdout
    assert "part-0.csv" in shell.stdout and "w.txt" in shell.stdout
    assert sorted(containers(job)) == sorted(kept)  # the shell's container is gone
    refused = emulator(jobs, "shell", job, "--host", "algo-7")
    assert refused.returncode == 2 and "has no host 'algo-7'" in refused.stderr

    # `emulator rm` leaves nothing; the record stays.
    removed = emulator(jobs, "rm", job)
    assert removed.returncode == 0, removed.stderr
    assert f"removed work dir {work}" in removed.stdout
    assert leftovers(job, jobs.work_root) == []
    assert api.describe(job, home=jobs.home)["TrainingJobStatus"] == "Failed"
    assert api.kept_jobs(home=jobs.home) == {}
    assert emulator(jobs, "list").stdout.splitlines()[0].split()[-1] == "created"
    again = emulator(jobs, "shell", job)
    assert again.returncode == 2 and "--keep" in again.stderr


def test_a_job_not_kept_leaves_nothing_and_is_refused_by_shell_and_rm(jobs: JobRunner) -> None:
    job = unique_name("not-kept")
    result = run_failing(jobs, job)
    assert result.returncode == 1, result.stderr
    assert "Kept" not in result.stderr
    assert leftovers(job, jobs.work_root) == []
    for verb in ("shell", "rm"):
        refused = emulator(jobs, verb, job)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr
        assert "not run with --keep" in refused.stderr and "rerun" in refused.stderr


@pytest.mark.parametrize(
    ("script", "max_runtime", "status"),
    [("exit 0", 60, "Completed"), ("trap 'exit 143' TERM; sleep 30 & wait", 1, "Stopped")],
)
def test_every_ending_keeps(jobs: JobRunner, script: str, max_runtime: int, status: str) -> None:
    request = busybox_job(jobs, script, StoppingCondition={"MaxRuntimeInSeconds": max_runtime})
    record = jobs.run(request, keep=True, stop_grace_seconds=1)
    job = request["TrainingJobName"]
    assert record["TrainingJobStatus"] == status
    [work] = jobs.work_root.glob(f"sagemaker-emulator-{job}-*")
    assert [c["status"] for c in containers(job).values()] == ["exited"]
    assert any("Kept (--keep)" in notice for notice in jobs.notices)
    assert api.remove_kept(job, home=jobs.home) == [
        f"container sm-{job}-{work.name[-8:]}-algo-1",
        f"work dir {work}",
    ]
    assert jobs.leftovers(job) == []


def test_ctrl_c_keeps_and_a_killed_emulator_s_hosts_are_stopped_not_removed(
    jobs: JobRunner,
) -> None:
    interrupted, job = start_cli_job(jobs, "--keep", "--stop-grace", "1")
    interrupted.send_signal(signal.SIGINT)
    _, err = interrupted.communicate(timeout=60)
    assert interrupted.returncode == 130, err
    assert "Kept (--keep)" in err and "containers and work dir kept" in err
    assert [c["status"] for c in containers(job).values()] == ["exited"]
    assert api.describe(job, home=jobs.home)["TrainingJobStatus"] == "Stopped"

    # The emulator killed mid-run: `prune` records the job Failed and stops its host, which
    # stays (exited) with the work dir, for `emulator shell`.
    killed, other = start_cli_job(jobs, "--keep")
    killed.kill()
    killed.communicate(timeout=30)
    assert [c["status"] for c in containers(other).values()] == ["running"]
    pruned = emulator(jobs, "prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "process of the kept container" in pruned.stdout
    assert [c["status"] for c in containers(other).values()] == ["exited"]
    assert len(jobs.leftovers(other)) == 2  # the container and the work dir
    assert api.describe(other, home=jobs.home)["TrainingJobStatus"] == "Failed"
    assert set(api.kept_jobs(home=jobs.home)) == {job, other}
    for name in (job, other):
        api.remove_kept(name, home=jobs.home)
        assert jobs.leftovers(name) == []


def test_prune_kept_removes_every_kept_job(jobs: JobRunner) -> None:
    names = []
    for _ in range(2):
        request = busybox_job(jobs, "echo hi > /opt/ml/model/hi; exit 0")
        jobs.run(request, keep=True)
        names.append(request["TrainingJobName"])
    assert all(len(jobs.leftovers(name)) == 2 for name in names)
    assert emulator(jobs, "prune").returncode == 0
    assert all(len(jobs.leftovers(name)) == 2 for name in names)

    result = emulator(jobs, "prune", "--kept")
    assert result.returncode == 0, result.stderr
    for name in names:
        assert f"(job {name})" in result.stdout
        assert jobs.leftovers(name) == []
    assert result.stdout.splitlines()[-1] == "4 kept resource(s) removed"
    assert api.kept_jobs(home=jobs.home) == {}


def test_a_kept_job_is_not_replaced_nor_removed_while_a_shell_is_open(jobs: JobRunner) -> None:
    request = busybox_job(jobs, "exit 0")
    job = request["TrainingJobName"]
    jobs.run(request, keep=True)
    with pytest.raises(JobExists) as refused:
        jobs.run(request, keep=True, replace=True)
    assert f"emulator rm {job}" in str(refused.value)

    env = jobs.cli_environ()
    shell = subprocess.Popen(
        [*EMULATOR, "shell", job],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(LABEL_SHELL in c["labels"] for c in containers(job).values()):
            assert time.monotonic() < deadline and shell.poll() is None, shell.stderr
            time.sleep(0.1)
        removal = emulator(jobs, "rm", job)
        assert removal.returncode == 2 and "a shell is open" in removal.stderr
        out, err = shell.communicate("hostname\n", timeout=30)
    finally:
        if shell.poll() is None:
            shell.kill()
    assert shell.returncode == 0, err
    assert out == "algo-1\n"
    assert not any(LABEL_SHELL in c["labels"] for c in containers(job).values())
    assert emulator(jobs, "rm", job).returncode == 0
    assert jobs.leftovers(job) == []


@needs_root_tools
def test_rm_removes_root_owned_files_for_a_non_root_user(
    user: User, python: tuple[list[str], dict[str, str]]
) -> None:
    interpreter, env = python
    script = "mkdir -p /opt/ml/model/by-root/deeper && echo w > /opt/ml/model/by-root/deeper/w"
    request = probe_request(
        user.output,
        AlgorithmSpecification={
            "TrainingImage": BUSYBOX,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["sh", "-c", f"{script}; exit 3"],
        },
    )
    job = request["TrainingJobName"]
    request_file = user.root / "request.json"
    request_file.write_text(json.dumps(request))
    os.chown(request_file, user.uid, user.gid)

    ran = user.run(
        "-m", "emulator", "run", "--keep", str(request_file), python=interpreter, env=env
    )
    assert ran.returncode == 1, ran.stderr
    [work] = user.tmp.glob(f"sagemaker-emulator-{job}-*")
    assert (work / "algo-1/model/by-root/deeper/w").stat().st_uid == 0  # root's, kept
    removed = user.run("-m", "emulator", "rm", job, python=interpreter, env=env)
    assert removed.returncode == 0, removed.stderr
    assert leftovers(job, user.tmp) == []


@pytest.fixture(autouse=True)
def _nothing_kept_after(jobs: JobRunner) -> Any:
    """Whatever a test kept is removed, even when it failed half-way."""
    yield
    for name in api.kept_jobs(home=jobs.home):
        api.remove_kept(name, home=jobs.home)
