"""FastFile mode end to end (CONTRACT.md section 4): real jobs on the real engine whose container
reads the channel at /opt/ml/input/data/<channel>, a read-only FUSE mount of the emulator.

A local directory that is exactly its listing is bind-mounted read-only instead, without FUSE
(fastfile/localview.py; its tests are in test_fastfile_localview.py). The tests here that look
at the FUSE view itself (its modes, block-cache counters, mount and server) ask for it on
their local channels with the ``fuse_view`` fixture (EMULATOR_FASTFILE_LOCAL=fuse); the tests
that hold for both views run with each.

Readers are Python scripts run by the python image (the script travels base64-encoded in
hyperparameters ``reader.NN``, as in test_pipe_job.py) or busybox one-liners. They report
through /opt/ml/model/report.json (model.tar.gz); the test compares with its own checksums of
the source. Each script's first lines (PRELUDE) read the mount's block-cache counters from the
``user.emulator.fastfile.stats`` xattr of the channel root, to show what was fetched when.

FUSE unavailable, without mocking: the emulator CLI runs in a private mount namespace
(``unshare --mount``, root only) whose /dev is an empty tmpfs (no /dev/fuse: a container started
without ``--device /dev/fuse``) or a ``nodev`` tmpfs holding a /dev/fuse node (the device
exists but opening it is refused, as a device cgroup does). Nothing leaks out of the namespace.

Every test checks that no container, network, work dir, FUSE mount or file system process is
left, whichever way the job ended.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from emulator.engine import LABEL_JOB
from emulator.stage.fastfile import ENV_LOCAL_VIEW
from emulator.stage.fastfile.mount import FSTYPE, find_stale_mounts, force_unmount, read_mounts
from emulator.state.store import JobStore
from tests.fixtures.cli import EMULATOR, start_cli_job
from tests.fixtures.jobs import (
    BUSYBOX,
    JobRunner,
    busybox_request,
    channel,
    python_reader_members,
    sha256sums,
    unique_name,
)
from tests.fixtures.polling import wait_until
from tests.fixtures.s3 import S3Server

pytestmark = [pytest.mark.docker, pytest.mark.fuse, pytest.mark.timeout(90)]

NONROOT = "sagemaker-emulator/probe-nonroot:latest"
DATA = "/opt/ml/input/data"
MIB = 1024 * 1024
BLOCK = 8 * MIB  # the default block size: ranges below straddle its boundaries

FILES = {
    "a.csv": b"x,y\n1,2\n3,4\n",
    "empty": b"",
    "big.bin": random.Random(1).randbytes(2 * BLOCK + 123),
    "nested/deeper/c.bin": random.Random(2).randbytes(3 * MIB + 7),
    "nested/d.txt": b"deeper\n" * 100,
    "spaced name \u00fc.txt": b"spaces and unicode are kept",
}

PRELUDE = '''
import errno, hashlib, json, mmap, os, stat, subprocess, sys, threading, traceback

DATA = "/opt/ml/input/data"
MODEL = "/opt/ml/model"


def _fail(kind, value, tb):
    with open("/opt/ml/output/failure", "w") as failure:
        failure.write("".join(traceback.format_exception(kind, value, tb))[-900:])
    sys.__excepthook__(kind, value, tb)


sys.excepthook = _fail


def sha(data):
    return hashlib.sha256(data).hexdigest()


def stats(name):
    return json.loads(os.getxattr(f"{DATA}/{name}", "user.emulator.fastfile.stats"))


def tree(root):
    """Relative path -> [size, octal mode] for every file and folder, by stat only."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            found[os.path.relpath(path, root)] = [info.st_size, oct(info.st_mode)]
    return found


def files_of(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


def report(**values):
    with open(f"{MODEL}/report.json", "w") as out:
        json.dump(values, out)

'''


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expected_tree(files: dict[str, bytes]) -> dict[str, list[Any]]:
    tree: dict[str, list[Any]] = {}
    for name, content in files.items():
        tree[name] = [len(content), oct(0o100444)]
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            tree["/".join(parts[:depth])] = [0, oct(0o40555)]
    return tree


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fastfile-data")
    root.chmod(0o755)  # mktemp makes it 0700: bind-mounted only when every user may read it
    for name, content in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


@pytest.fixture
def fuse_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local channels served through FUSE too, as S3 channels and shards always are."""
    monkeypatch.setenv(ENV_LOCAL_VIEW, "fuse")


@pytest.fixture(params=["bind", "fuse"])
def view(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way a local FastFile channel is shown: its directory bind-mounted, or FUSE."""
    if request.param == "fuse":
        monkeypatch.setenv(ENV_LOCAL_VIEW, "fuse")
    return str(request.param)


def host_tree(root: Path) -> dict[str, list[Any]]:
    """What PRELUDE's ``tree`` gives for a bind mount of ``root``: the host's sizes and modes."""
    found: dict[str, list[Any]] = {}
    for path in root.rglob("*"):
        info = path.lstat()
        found[str(path.relative_to(root))] = [info.st_size, oct(info.st_mode)]
    return found


def fastfile_mounts(root: Path | None = None) -> list[Path]:
    return [
        record.mountpoint
        for record in read_mounts()
        if record.fstype == FSTYPE and (root is None or root in record.mountpoint.parents)
    ]


def fastfile_children() -> list[int]:
    """File system processes started by this test process (still running or unreaped)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"emulator.stage.fastfile.server" in cmdline:
            found.append(int(proc.name))
    return found


@pytest.fixture(scope="module", autouse=True)
def no_mounts_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    root = tmp_path_factory.getbasetemp()
    leftovers = fastfile_mounts(root)
    for path in leftovers:
        force_unmount(path)
    assert not leftovers, f"FastFile mounts left behind: {leftovers}"


def assert_nothing_left(jobs: JobRunner, name: str) -> None:
    assert jobs.leftovers(name) == []
    assert fastfile_mounts(jobs.work_root) == []
    assert fastfile_children() == []


def python_job(
    jobs: JobRunner,
    body: str,
    channels: list[dict[str, Any]],
    args: Any = None,
    **members: Any,
) -> Any:
    """A request whose container runs PRELUDE + ``body`` in the python image, job-level mode
    FastFile (``algorithm`` members override); ``args`` reaches the script as ``ARGS``."""
    code = f"{PRELUDE}ARGS = json.loads({json.dumps(args)!r})\n{textwrap.dedent(body)}"
    return jobs.request(
        InputDataConfig=channels, **python_reader_members(code, "FastFile", 60, **members)
    )


shell_job = functools.partial(busybox_request, mode="FastFile", max_runtime=60)


def run_clean(jobs: JobRunner, request: dict[str, Any], status: str = "Completed") -> Any:
    record = jobs.run(request)
    tail = "\n".join(line for _, line in jobs.logs[-30:])
    assert record["TrainingJobStatus"] == status, f"{record.get('FailureReason')}\n{tail}"
    assert_nothing_left(jobs, request["TrainingJobName"])
    return record


def report(jobs: JobRunner, record: dict[str, Any]) -> Any:
    return json.loads(jobs.model(record)["report.json"])


# --- listing and full reads -----------------------------------------------------------------

LIST_THEN_READ = """
    listed = tree(f"{DATA}/train")
    before = stats("train")
    names = files_of(f"{DATA}/train")
    sums = {name: sha(open(f"{DATA}/train/{name}", "rb").read()) for name in names}
    mounts = [line.split() for line in open("/proc/mounts")]
    report(
        listed=listed,
        before=before,
        after=stats("train"),
        sums=sums,
        mount=[m[2:4] for m in mounts if m[1] == f"{DATA}/train"],
        config=json.load(open("/opt/ml/input/config/inputdataconfig.json")),
    )
"""


@pytest.mark.parametrize("where", ["local", "moto"])
def test_listing_and_sizes_before_any_read_then_every_byte(
    jobs: JobRunner, data: Path, where: str, request: pytest.FixtureRequest, fuse_view: None
) -> None:
    if where == "moto":
        s3: S3Server = request.getfixturevalue("moto_s3")
        bucket = s3.new_bucket("fastfile")
        s3.put_objects(bucket, {f"train/{name}": content for name, content in FILES.items()})
        s3.put_objects(bucket, {"train-not-this/x": b"outside the prefix"})
        uri = f"s3://{bucket}/train/"
    else:
        uri = str(data)
    seen = report(jobs, run_clean(jobs, python_job(jobs, LIST_THEN_READ, [channel("train", uri)])))

    assert seen["listed"] == expected_tree(FILES)
    assert seen["before"]["fetches"] == 0  # the listing and the sizes cost no read
    assert seen["sums"] == {name: sha(content) for name, content in FILES.items()}
    assert seen["after"]["fetched_bytes"] == sum(map(len, FILES.values()))  # each byte once
    fstype, options = seen["mount"][0]
    assert fstype == FSTYPE
    assert options.split(",")[0] == "ro"
    assert seen["config"] == {
        "train": {
            "TrainingInputMode": "FastFile",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
    }


# --- read-only --------------------------------------------------------------------------

WRITES = """
    root = f"{DATA}/train"
    f, d = f"{root}/a.csv", f"{root}/nested"
    operations = {
        "open r+": lambda: open(f, "r+b"),
        "open append": lambda: open(f, "ab"),
        "open truncate": lambda: os.open(f, os.O_WRONLY | os.O_TRUNC),
        "create": lambda: open(f"{root}/new.txt", "wb"),
        "create exclusive": lambda: os.open(f"{d}/new", os.O_CREAT | os.O_EXCL | os.O_WRONLY),
        "truncate": lambda: os.truncate(f, 0),
        "rename": lambda: os.rename(f, f"{root}/renamed.csv"),
        "rename folder": lambda: os.rename(d, f"{root}/moved"),
        "replace": lambda: os.replace(f"{root}/empty", f),
        "unlink": lambda: os.unlink(f),
        "rmdir": lambda: os.rmdir(f"{d}/deeper"),
        "mkdir": lambda: os.mkdir(f"{root}/made"),
        "chmod": lambda: os.chmod(f, 0o666),
        "chmod folder": lambda: os.chmod(root, 0o777),
        "chown": lambda: os.chown(f, 65534, 65534),
        "utime": lambda: os.utime(f, (0, 0)),
        "symlink": lambda: os.symlink("a.csv", f"{root}/link"),
        "link": lambda: os.link(f, f"{root}/hard"),
        "mkfifo": lambda: os.mkfifo(f"{root}/fifo"),
        "setxattr": lambda: os.setxattr(f, "user.tag", b"1"),
        "removexattr": lambda: os.removexattr(f, "user.tag"),
    }
    errors, messages = {}, set()
    for name, operation in operations.items():
        try:
            operation()
            errors[name] = "succeeded"
        except OSError as exc:
            errors[name] = errno.errorcode.get(exc.errno, str(exc.errno))
            messages.add(exc.strerror)
    report(errors=errors, messages=sorted(messages), after=tree(root))
"""


def test_writes_renames_deletes_and_chmod_fail_with_erofs(
    jobs: JobRunner, data: Path, view: str
) -> None:
    seen = report(jobs, run_clean(jobs, python_job(jobs, WRITES, [channel("train", data)])))
    assert set(seen["errors"].values()) == {"EROFS"}, seen["errors"]
    assert seen["messages"] == ["Read-only file system"]
    if view == "fuse":
        assert seen["after"] == expected_tree(FILES)
    else:  # the directory itself: its own modes, unchanged
        assert seen["after"] == host_tree(data)
    for name, content in FILES.items():
        assert (data / name).read_bytes() == content


def test_the_shell_sees_read_only_file_system(jobs: JobRunner, data: Path, view: str) -> None:
    script = (
        f"cd {DATA}/train; for c in 'touch new' 'rm a.csv' 'mv a.csv b' 'chmod 777 a.csv' "
        "'mkdir x' 'cp a.csv a2'; do $c 2>&1; done; echo done"
    )
    run_clean(jobs, shell_job(jobs, script, [channel("train", data)]))
    lines = [line for _, line in jobs.logs]
    assert lines[-1] == "done"
    assert len(lines) == 7 and all("Read-only file system" in line for line in lines[:-1]), lines


# --- random access, seek, mmap, concurrency --------------------------------------------------

RANGES = """
    results = {"pread": [], "seek": [], "seek_end": [], "mmap": []}
    handles = {}
    for name, offset, size in ARGS:
        path = f"{DATA}/train/{name}"
        if name not in handles:
            raw = open(path, "rb", buffering=0)
            handles[name] = (raw, open(path, "rb"), mmap.mmap(raw.fileno(), 0, prot=mmap.PROT_READ))
        raw, buffered, mapped = handles[name]
        results["pread"].append(sha(os.pread(raw.fileno(), size, offset)))
        buffered.seek(offset)
        results["seek"].append(sha(buffered.read(size)))
        buffered.seek(offset - os.fstat(raw.fileno()).st_size, os.SEEK_END)
        results["seek_end"].append(sha(buffered.read(size)))
        results["mmap"].append(sha(mapped[offset : offset + size]))
    report(**results, stats=stats("train"))
"""


def test_random_reads_seek_and_mmap_return_the_right_bytes(
    jobs: JobRunner, data: Path, fuse_view: None
) -> None:
    rng = random.Random(5)
    ranges: list[tuple[str, int, int]] = []
    for name in ("big.bin", "nested/deeper/c.bin", "a.csv"):
        size = len(FILES[name])
        edges = [0, size - 1, size, *(b + d for b in (BLOCK, 2 * BLOCK) for d in (-3, 0, 5))]
        for offset in [e for e in edges if 0 <= e <= size] + [
            rng.randrange(size) for _ in range(8)
        ]:
            ranges.append((name, offset, rng.choice([1, 4096, rng.randrange(1, 3 * MIB)])))
    ranges.append(("big.bin", len(FILES["big.bin"]) - 10, 1000))  # runs past the end
    rng.shuffle(ranges)  # random order: no read-ahead pattern to follow
    request = python_job(jobs, RANGES, [channel("train", data)], args=ranges)
    seen = report(jobs, run_clean(jobs, request))

    expected = [sha(FILES[name][offset : offset + size]) for name, offset, size in ranges]
    for way in ("pread", "seek", "seek_end", "mmap"):
        assert seen[way] == expected, way
    # Whatever the order and the way (page cache, mmap), no block was fetched twice.
    blocks = sum(-(-len(content) // BLOCK) for content in FILES.values())
    assert seen["stats"]["fetches"] <= blocks


CONCURRENT = """
    import random
    names = files_of(f"{DATA}/train")
    barrier = threading.Barrier(16)
    results, lock = [], threading.Lock()

    def whole(name, chunk):
        barrier.wait()
        digest = hashlib.sha256()
        with open(f"{DATA}/train/{name}", "rb", buffering=0) as f:
            while block := f.read(chunk):
                digest.update(block)
        with lock:
            results.append(["whole", name, digest.hexdigest()])

    def scattered(seed):
        rng = random.Random(seed)
        size = os.path.getsize(f"{DATA}/train/big.bin")
        barrier.wait()
        with open(f"{DATA}/train/big.bin", "rb", buffering=0) as f:
            for _ in range(20):
                offset = rng.randrange(size)
                length = rng.randrange(1, 1 << 20)
                digest = sha(os.pread(f.fileno(), length, offset))
                with lock:
                    results.append(["range", offset, length, digest])

    chunks = [1000, 4096, 10007, 65536, 100003, 1 << 20, 3 << 20, 1 << 24]
    threads = [threading.Thread(target=whole, args=("big.bin", chunk)) for chunk in chunks]
    threads += [threading.Thread(target=whole, args=(names[n], 65536)) for n in range(4)]
    threads += [threading.Thread(target=scattered, args=(n,)) for n in range(4)]
    processes = [
        subprocess.Popen(["sha256sum", *names], cwd=f"{DATA}/train", stdout=-1, text=True)
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sums = [process.communicate()[0] for process in processes]
    report(results=results, sums=sums, stats=stats("train"))
"""


def test_many_concurrent_readers_get_exactly_the_source(
    jobs: JobRunner, data: Path, fuse_view: None
) -> None:
    seen = report(jobs, run_clean(jobs, python_job(jobs, CONCURRENT, [channel("train", data)])))
    assert len(seen["results"]) == 12 + 4 * 20
    for kind, *rest in seen["results"]:
        if kind == "whole":
            name, digest = rest
            assert digest == sha(FILES[name]), name
        else:
            offset, length, digest = rest
            assert digest == sha(FILES["big.bin"][offset : offset + length]), (offset, length)
    listing = "".join(f"{sha(FILES[n])}  {n}\n" for n in sorted(FILES))
    assert seen["sums"] == [listing] * 4
    # However many readers, each block was fetched once (the cache holds the whole channel).
    assert seen["stats"]["fetched_bytes"] == sum(map(len, FILES.values()))


def test_a_non_root_image_reads_the_channel(jobs: JobRunner, data: Path, view: str) -> None:
    request = jobs.request(
        AlgorithmSpecification={"TrainingImage": NONROOT, "TrainingInputMode": "FastFile"},
        InputDataConfig=[channel("train", data)],
    )
    record = run_clean(jobs, request)
    assert jobs.probe(record, "uid").strip() == "65534"
    assert jobs.probe(record, "data.sha256") == sha256sums(FILES, "train")
    config = json.loads(jobs.probe(record, "inputdataconfig.json"))
    assert config["train"]["TrainingInputMode"] == "FastFile"


SHARDS = """
    host = json.load(open("/opt/ml/input/config/resourceconfig.json"))["current_host"]
    root = f"{DATA}/train"
    seen = {name: sha(open(f"{root}/{name}", "rb").read()) for name in files_of(root)}
    mount = [line.split()[2] for line in open("/proc/mounts") if line.split()[1] == root]
    with open(f"{MODEL}/{host}.json", "w") as out:
        json.dump({"seen": seen, "mount": mount}, out)
"""


def test_each_host_mounts_its_own_shard(jobs: JobRunner, data: Path) -> None:
    sharded = channel("train", data)
    sharded["DataSource"]["S3DataSource"]["S3DataDistributionType"] = "ShardedByS3Key"
    resources = {"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1}
    request = python_job(jobs, SHARDS, [sharded], ResourceConfig=resources)
    model = jobs.model(run_clean(jobs, request))
    order = sorted(FILES)
    for index, host in enumerate(("algo-1", "algo-2")):
        seen = json.loads(model[f"{host}.json"])
        assert seen["mount"] == [FSTYPE]
        # Object i of the key order goes to host i mod 2 (plan.py), served by its own mount.
        assert seen["seen"] == {name: sha(FILES[name]) for name in order[index::2]}


# --- mixed modes -----------------------------------------------------------------------------

MIXED = """
    config = json.load(open("/opt/ml/input/config/inputdataconfig.json"))
    def sums(root):
        return {name: sha(open(f"{root}/{name}", "rb").read()) for name in files_of(root)}
    def writable(root):
        try:
            with open(f"{root}/probe-write", "wb"):
                return True
        except OSError as exc:
            return errno.errorcode[exc.errno]
    listing = sorted(os.listdir(DATA))  # before epoch 0 ends and epoch 2's FIFO appears
    with open(f"{DATA}/stream_0", "rb") as pipe:
        streamed = sha(pipe.read())
    report(
        modes={name: c["TrainingInputMode"] for name, c in config.items()},
        listing=listing,
        fast=sums(f"{DATA}/fast"),
        files=sums(f"{DATA}/files"),
        streamed=streamed,
        writable={name: writable(f"{DATA}/{name}") for name in ("fast", "files")},
    )
"""


def test_file_fastfile_and_pipe_channels_in_one_job(
    jobs: JobRunner, data: Path, make_files: Any, view: str
) -> None:
    copied = {"f1.txt": b"copied\n", "sub/f2.bin": os.urandom(5000)}
    streamed = {"s1": os.urandom(3000), "s2": b"streamed\n"}
    channels = [
        channel("fast", data),  # the job's mode, FastFile
        channel("files", make_files(copied), InputMode="File"),
        channel("stream", make_files(streamed), InputMode="Pipe"),
    ]
    seen = report(jobs, run_clean(jobs, python_job(jobs, MIXED, channels)))
    assert seen["modes"] == {"fast": "FastFile", "files": "File", "stream": "Pipe"}
    assert seen["listing"] == ["fast", "files", "stream_0", "stream_1"]
    assert seen["fast"] == {name: sha(content) for name, content in FILES.items()}
    assert seen["files"] == {name: sha(content) for name, content in copied.items()}
    assert seen["streamed"] == sha(streamed["s1"] + streamed["s2"])
    assert seen["writable"] == {"fast": "EROFS", "files": True}


# --- the mount goes away whatever happens -----------------------------------------------------

HOLD_OPEN = (
    "trap 'exit 143' TERM; exec 3< {data}/train/big.bin; head -c 4 {data}/train/a.csv; echo; {rest}"
)


class Boom(Exception):
    pass


@pytest.mark.parametrize(
    "ending", ["failure", "max-runtime", "exception", "ctrl-c"], ids=lambda ending: ending
)
def test_the_mount_is_gone_after_the_job_ends(
    jobs: JobRunner, data: Path, ending: str, fuse_view: None
) -> None:
    rest = "exit 3" if ending == "failure" else "sleep 30 & wait"
    request = shell_job(
        jobs,
        HOLD_OPEN.format(data=DATA, rest=rest),
        [channel("train", data)],
    )
    if ending != "failure":
        request["StoppingCondition"] = {"MaxRuntimeInSeconds": 2}
    raised: list[BaseException] = []

    def notice(message: str) -> None:
        jobs.notices.append(message)
        # Raised from the supervision loop while the container holds a file of the mount open.
        if message.startswith("MaxRuntimeInSeconds") and ending in ("exception", "ctrl-c"):
            mounts = fastfile_mounts(jobs.work_root)
            assert len(mounts) == 1, mounts
            raised.append(
                Boom("raised by the test") if ending == "exception" else KeyboardInterrupt()
            )
            raise raised[-1]

    if ending in ("exception", "ctrl-c"):
        with pytest.raises(Boom if ending == "exception" else KeyboardInterrupt):
            jobs.run(request, notice=notice)
        assert raised
    else:
        record = jobs.run(request, notice=notice)
        if ending == "failure":
            assert record["FailureReason"] == "AlgorithmError: , exit code: 3"
        else:
            assert record["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert ("algo-1", "x,y") in jobs.logs  # the mount served the container
    assert_nothing_left(jobs, request["TrainingJobName"])


@pytest.mark.parametrize("killed", ["emulator", "emulator-and-file-system"])
def test_prune_after_sigkill_removes_the_stale_mount(
    jobs: JobRunner, data: Path, killed: str, fuse_view: None
) -> None:
    process, name = start_cli_job(jobs, "--input-mode", "FastFile", "--channel", f"train={data}")
    (mount,) = fastfile_mounts(jobs.work_root)
    source = next(r.source for r in read_mounts() if r.mountpoint == mount)
    server = int(source.split(":")[1])
    if killed == "emulator":
        process.kill()
        process.communicate(timeout=30)
        # The file system saw its lifeline close and unmounted itself.
        wait_until(lambda: not fastfile_mounts(jobs.work_root), "the mount to go", timeout=15)
    else:
        os.kill(server, signal.SIGSTOP)  # so it cannot notice the emulator's death
        process.kill()
        process.communicate(timeout=30)
        os.kill(server, signal.SIGKILL)
        wait_until(
            lambda: find_stale_mounts(jobs.work_root) == [mount], "a stale mount", timeout=15
        )
    assert jobs.leftovers(name) != []

    env = {**os.environ, "EMULATOR_HOME": str(jobs.home), "TMPDIR": str(jobs.work_root)}
    pruned = subprocess.run([*EMULATOR, "prune"], env=env, capture_output=True, text=True)
    assert pruned.returncode == 0, pruned.stderr
    assert (f"removed FUSE mount {mount}" in pruned.stdout) == (killed != "emulator")
    assert jobs.leftovers(name) == []
    assert fastfile_mounts(jobs.work_root) == []
    assert JobStore(jobs.home).get(name)["TrainingJobStatus"] == "Failed"


# --- FUSE unavailable ------------------------------------------------------------------------

NO_FUSE = {
    # a container started without --device /dev/fuse
    "no-device": "mount -t tmpfs -o size=1m,mode=755 nofuse /dev",
    # the device node exists but opening it is refused (nodev mount; a device cgroup alike)
    "device-refused": "mount -t tmpfs -o size=1m,mode=755,nodev nofuse /dev && "
    "mknod -m 666 /dev/fuse c 10 229",
}


@pytest.mark.parametrize("setup", list(NO_FUSE))
def test_without_fuse_the_job_fails_before_start_saying_how_to_fix_it(
    jobs: JobRunner, data: Path, setup: str
) -> None:
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("needs root and unshare(1) to hide /dev/fuse in a private mount namespace")
    name = unique_name("nofuse")
    command = [
        *EMULATOR,
        "run",
        "--image",
        BUSYBOX,
        "--entrypoint",
        "true",
        "--input-mode",
        "FastFile",
        "--channel",
        f"train={data}",
        "--output",
        str(jobs.output),
        "--job-name",
        name,
    ]
    script = f'{NO_FUSE[setup]} && exec "$@"'
    env = {**os.environ, "EMULATOR_HOME": str(jobs.home), "TMPDIR": str(jobs.work_root)}
    result = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "FastFile input mode needs FUSE" in message
    reason = "does not exist" if setup == "no-device" else "Permission denied"
    assert f"/dev/fuse {reason}" in message or f"({reason})" in message
    assert "--device /dev/fuse" in message and "or use InputMode File" in message
    assert "Traceback" not in result.stderr
    # Before start: no record, no work dir, no container.
    assert JobStore(jobs.home).all_jobs() == []
    assert list(jobs.work_root.iterdir()) == []
    client = docker.from_env()
    assert client.containers.list(all=True, filters={"label": f"{LABEL_JOB}={name}"}) == []
