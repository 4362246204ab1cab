"""`emulator run --shell` (issue 12): everything prepared as for the job, but algo-1 runs a
shell fed from stdin (piped here: no terminal), the command that would have run printed
first; the job ends with the shell, its status following the shell's exit code, and nothing
is left behind. The other hosts run their command."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from emulator import api
from tests.fixtures.cli import EMULATOR
from tests.fixtures.inspect import container_attrs
from tests.fixtures.jobs import BUSYBOX, PYTHON, JobRunner, unique_name

pytestmark = pytest.mark.timeout(120)


def run_shell(
    jobs: JobRunner, name: str, stdin: str, *flags: str, image: str = BUSYBOX
) -> subprocess.CompletedProcess[str]:
    """`emulator run --shell` of a job whose command would print "training", in a process of
    its own, ``stdin`` piped to the shell."""
    data = jobs.work_root.parent / "data"
    data.mkdir(exist_ok=True)
    (data / "part-0.csv").write_text("1,2\n")
    env = jobs.cli_environ()
    command = [
        *EMULATOR,
        "run",
        "--image",
        image,
        "--job-name",
        name,
        "--output",
        str(jobs.output),
        "--entrypoint",
        "sh",
        "--entrypoint",
        "-c",
        "--arg",
        "echo training in $(hostname) > /opt/ml/output/data/ran-$(hostname)",
        "--channel",
        f"train={data}",
        "--stop-grace",
        "1",
        "--shell",
        *flags,
    ]
    return subprocess.run(command, input=stdin, env=env, capture_output=True, text=True, timeout=90)


def test_the_shell_sees_the_staged_channel_and_its_exit_code_fails_the_job(
    jobs: JobRunner,
) -> None:
    name = unique_name("shell")
    stdin = "ls /opt/ml/input/data/train\necho shell=$0 host=$(hostname)\nexit 3\necho never\n"
    result = run_shell(jobs, name, stdin)
    assert result.returncode == 1, result.stderr  # Failed
    assert result.stdout.splitlines() == ["part-0.csv", "shell=sh host=algo-1"]  # busybox: sh
    # the command that would have run, shell-quoted, before the shell started
    would = "sh -c 'echo training in $(hostname) > /opt/ml/output/data/ran-$(hostname)'"
    assert f"algo-1 starts a shell instead of the job's command, which would be:\n  {would}\n" in (
        result.stderr
    )
    record = api.describe(name, home=jobs.home)
    assert record["TrainingJobStatus"] == "Failed"
    assert record["FailureReason"].endswith("exit code: 3")
    assert jobs.leftovers(name) == []
    # what the shell printed is in the job's log too
    assert list(api.logs(name, home=jobs.home)) == ["part-0.csv", "shell=sh host=algo-1"]


def test_a_shell_ending_with_0_completes_the_job_and_the_other_hosts_run(
    jobs: JobRunner,
) -> None:
    name = unique_name("shell")
    stdin = (
        "test -s /opt/ml/input/config/resourceconfig.json && echo shell=$0\n"
        "echo by hand > /opt/ml/output/data/ran-algo-1\n"
    )  # then EOF: the shell ends with 0
    result = run_shell(jobs, name, stdin, "--instance-count", "2", image=PYTHON)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "shell=bash\n"  # the python image has bash
    assert f"The other hosts' lines: `emulator logs {name} --follow`" in result.stderr
    assert api.describe(name, home=jobs.home)["TrainingJobStatus"] == "Completed"
    outputs = jobs.output_archive(api.describe(name, home=jobs.home))
    assert outputs["ran-algo-1"] == b"by hand\n"
    assert outputs["ran-algo-2"] == b"training in algo-2\n"  # algo-2 ran its command
    assert jobs.leftovers(name) == []


def test_a_piped_shell_gets_stdin_without_a_tty(jobs: JobRunner) -> None:
    """The shell's container keeps stdin open until the pipe ends, with no TTY (the docker
    CLI's -t is for a terminal only)."""
    name = unique_name("shell")
    results: list[subprocess.CompletedProcess[str]] = []
    thread = threading.Thread(target=lambda: results.append(run_shell(jobs, name, "sleep 2\n")))
    thread.start()
    config: dict[str, object] = {}
    deadline = time.monotonic() + 60
    while not config and time.monotonic() < deadline:
        try:
            config = container_attrs(name, "algo-1")["Config"]
        except ValueError:  # not created yet
            time.sleep(0.1)
    thread.join(90)
    assert (config["OpenStdin"], config["StdinOnce"], config["Tty"]) == (True, True, False)
    assert results[0].returncode == 0, results[0].stderr
