"""`emulator run --code DIR` and `--watch` on the real engine (issue 12): DIR read-only at
/opt/ml/code in every host, the SageMaker toolkit running a script from it, refusals before
anything exists, and a watch that stops the running job on a change and reruns the new code
under a new name until Ctrl-C (exit 130, every job recorded, nothing left)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import api
from emulator.errors import JobNotFound
from tests.fixtures.cli import EMULATOR, leftovers, wait_for_status
from tests.fixtures.jobs import PYTHON, JobRunner, unique_name
from tests.fixtures.polling import wait_until

pytestmark = pytest.mark.timeout(180)

TOOLKIT = "sagemaker-emulator/toolkit:latest"
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "containers" / "build.py"

# Writes what it sees of /opt/ml/code into the model (one file per host): its files, whether
# a write there fails, and a module imported from beside it.
PROBE_CODE = textwrap.dedent(
    """
    import errno, json, os, socket, sys
    import helper

    try:
        open("/opt/ml/code/written.txt", "w").close()
        write = "allowed"
    except OSError as exc:
        write = errno.errorcode[exc.errno]
    host = json.load(open("/opt/ml/input/config/resourceconfig.json"))["current_host"]
    with open(f"/opt/ml/model/{host}.json", "w") as out:
        json.dump({"files": sorted(os.listdir("/opt/ml/code")), "write": write,
                   "helper": helper.VALUE, "argv": sys.argv}, out)
    """
)


def emulator(
    jobs: JobRunner, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = jobs.cli_environ()
    return subprocess.run(
        [*EMULATOR, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=150
    )


def make_code(root: Path, files: dict[str, str]) -> Path:
    code = root / "code"
    code.mkdir(exist_ok=True)
    for name, text in files.items():
        (code / name).write_text(text)
    return code


def test_code_is_read_only_at_opt_ml_code_in_every_host(jobs: JobRunner) -> None:
    root = jobs.work_root.parent
    code = make_code(root, {"train.py": PROBE_CODE, "helper.py": "VALUE = 42\n"})
    before = sorted(p.name for p in code.iterdir())
    name = unique_name("code")
    result = emulator(
        jobs,
        *("run", "--image", PYTHON, "--job-name", name, "--output", str(jobs.output)),
        *("--instance-count", "2", "--stop-grace", "1", "--code", "code"),  # relative: to cwd
        *("--entrypoint", "python3", "--entrypoint", "/opt/ml/code/train.py"),
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    record = api.describe(name, home=jobs.home)
    model = jobs.model(record)
    for host in ("algo-1", "algo-2"):
        seen = json.loads(model[f"{host}.json"])
        assert seen == {
            "files": ["helper.py", "train.py"],
            "write": "EROFS",
            "helper": 42,
            "argv": ["/opt/ml/code/train.py"],
        }
    assert sorted(p.name for p in code.iterdir()) == before  # not even a __pycache__
    assert leftovers(name, jobs.work_root) == []


def test_a_missing_code_directory_is_refused_before_anything_exists(jobs: JobRunner) -> None:
    name = unique_name("nocode")
    missing = jobs.work_root.parent / "nope"
    result = emulator(jobs, "run", "--image", PYTHON, "--job-name", name, "--code", str(missing))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"error: --code (RunOptions.code_dir) {missing}: no such directory"
    )
    with pytest.raises(JobNotFound):
        api.describe(name, home=jobs.home)
    assert leftovers(name, jobs.work_root) == []
    assert list(jobs.work_root.iterdir()) == []


def test_a_sensitive_code_directory_is_refused(jobs: JobRunner) -> None:
    name = unique_name("etc")
    result = emulator(jobs, "run", "--image", PYTHON, "--job-name", name, "--code", "/etc")
    assert result.returncode == 2
    assert "exposes the sensitive host path /etc" in result.stderr
    with pytest.raises(JobNotFound):
        api.describe(name, home=jobs.home)


@pytest.fixture(scope="module")
def toolkit_image() -> str:
    """The toolkit image, built by containers/build.py (under a second when up to date), as
    tests/engine/test_toolkit_image.py builds it: a failure to build fails, never skips."""
    result = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "toolkit"],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        pytest.fail(f"building {TOOLKIT} failed:\n{(result.stdout + result.stderr)[-4000:]}")
    return TOOLKIT


TOOLKIT_SCRIPT = textwrap.dedent(
    """
    import argparse, json, os, sys
    import helper

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "seen.json"), "w") as out:
        json.dump({"file": __file__, "cwd": os.getcwd(), "epochs": args.epochs,
                   "module_dir": os.environ["SM_MODULE_DIR"], "helper": helper.VALUE}, out)
    """
)


@pytest.mark.timeout(1200)  # the first run may build the image
def test_the_toolkit_runs_the_sdks_script_from_the_mounted_code(
    toolkit_image: str, jobs: JobRunner
) -> None:
    """The SDK's request names sourcedir.tar.gz on S3 (here a bucket nothing serves): with
    --code the toolkit is pointed at the mount and runs the script there, downloading nothing
    and writing nothing into the read-only directory."""
    code = make_code(
        jobs.work_root.parent, {"train.py": TOOLKIT_SCRIPT, "helper.py": "VALUE = 'beside'\n"}
    )
    sdk_style = {
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": "s3://no-such-bucket-here/job/source/sourcedir.tar.gz",
        "sagemaker_region": "us-east-1",
        "epochs": 3,
    }
    request = jobs.request(
        AlgorithmSpecification={"TrainingImage": toolkit_image, "TrainingInputMode": "File"},
        HyperParameters={key: json.dumps(value) for key, value in sdk_style.items()},
    )

    record = jobs.run(request, code_dir=code)

    log = "\n".join(line for _, line in jobs.logs)
    assert record["TrainingJobStatus"] == "Completed", (record.get("FailureReason"), log)
    assert json.loads(jobs.model(record)["seen.json"]) == {
        "file": "/opt/ml/code/train.py",
        "cwd": "/opt/ml/code",
        "epochs": 3,
        "module_dir": "/opt/ml/code",
        "helper": "beside",
    }
    assert any(
        "sagemaker_submit_directory (s3://no-such-bucket-here/job/source/sourcedir.tar.gz) "
        "points at /opt/ml/code instead" in notice
        for notice in jobs.notices
    ), jobs.notices
    # The record echoes the request as sent.
    submitted = record["HyperParameters"]["sagemaker_submit_directory"]
    assert json.loads(submitted).startswith("s3://no-such-bucket-here/")
    assert sorted(p.name for p in code.iterdir()) == ["helper.py", "train.py"]


# -- --watch -------------------------------------------------------------------------------------

# Prints its version, then trains "forever" (SIGTERM ends it), or ends at once when told to.
WATCHED = textwrap.dedent(
    """
    import signal, sys, time
    VERSION = {version}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"version {{VERSION}}", flush=True)
    open(f"/opt/ml/model/v{{VERSION}}", "w").close()
    if VERSION == 1:
        sys.exit(0)
    time.sleep(300)
    """
)


def status(jobs: JobRunner, name: str) -> str | None:
    try:
        return str(api.describe(name, home=jobs.home)["TrainingJobStatus"])
    except JobNotFound:
        return None


def logged(jobs: JobRunner, name: str, text: str) -> bool:
    try:
        return any(text in line for line in api.logs(name, home=jobs.home))
    except (JobNotFound, FileNotFoundError):
        return False


@pytest.fixture
def watcher_process(jobs: JobRunner) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Whatever the test started is ended, even when it failed half-way."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def test_watch_reruns_on_change_and_ctrl_c_ends_it(
    jobs: JobRunner, watcher_process: list[subprocess.Popen[bytes]]
) -> None:
    root = jobs.work_root.parent
    code = make_code(root, {"train.py": WATCHED.format(version=1)})
    base = unique_name("watch")
    env = jobs.cli_environ()
    stderr_path = root / "watch.stderr"
    with open(root / "watch.stdout", "wb") as stdout, open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [
                *EMULATOR,
                *("run", "--image", PYTHON, "--job-name", base, "--output", str(jobs.output)),
                *("--entrypoint", "python3", "--entrypoint", "/opt/ml/code/train.py"),
                *("--stop-grace", "1", "--code", str(code), "--watch"),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    watcher_process.append(process)

    def said(text: str) -> bool:
        return text in stderr_path.read_text()

    # Version 1 ends by itself: reported, and the watch waits.
    wait_until(
        lambda: said(f"watch: {base}-1 ended Completed (exit code 0)"), "the report", timeout=60
    )
    wait_until(lambda: said("watch: waiting for a change under"), "the watch to wait", timeout=60)

    # A change: version 2 runs under a new name, and keeps running.
    (code / "train.py").write_text(WATCHED.format(version=2))
    wait_for_status(jobs.home, f"{base}-2", "Training")
    wait_until(lambda: logged(jobs, f"{base}-2", "version 2"), "version 2's output", timeout=60)

    # Editor litter and caches change nothing; a real save (a temporary renamed over the
    # file, as editors and sed -i do) stops version 2 and starts version 3.
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (code / ".train.py.swp").write_bytes(b"\0")
    time.sleep(1.5)
    assert status(jobs, f"{base}-2") == "InProgress"
    temporary = code / ".save-tmp-train"
    temporary.write_text(WATCHED.format(version=3))
    os.replace(temporary, code / "train.py")
    wait_until(lambda: status(jobs, f"{base}-2") == "Stopped", f"{base}-2 stopped", timeout=60)
    wait_for_status(jobs.home, f"{base}-3", "Training")
    wait_until(lambda: logged(jobs, f"{base}-3", "version 3"), "version 3's output", timeout=60)

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130, stderr_path.read_text()

    names = {record["TrainingJobName"]: record for record in api.list_jobs(home=jobs.home)}
    assert sorted(names) == [f"{base}-1", f"{base}-2", f"{base}-3"]
    assert [names[f"{base}-{n}"]["TrainingJobStatus"] for n in (1, 2, 3)] == [
        "Completed",
        "Stopped",
        "Stopped",
    ]
    for count in (1, 2, 3):  # each ran its own version of the code
        assert f"v{count}" in jobs.model(names[f"{base}-{count}"])
        assert leftovers(f"{base}-{count}", jobs.work_root) == []
    assert list(jobs.work_root.iterdir()) == []
    errors = stderr_path.read_text()
    assert "Traceback" not in errors
    assert f"train.py changed: stopping {base}-2" in errors
    assert f"watch: Interrupted: the watch ended; {base}-3 was stopped and cleaned up" in errors
