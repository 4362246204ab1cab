"""Pipe mode end to end (CONTRACT.md section 4): real jobs on the real engine, the container
reading its FIFOs at /opt/ml/input/data/<channel>_<epoch> as a training image would.

Simple readers are busybox shell one-liners (ContainerEntrypoint ``sh -c``; each entrypoint string
is at most 256 characters). Longer readers are Python scripts run by the python image: the
script travels base64-encoded in hyperparameters ``reader.NN`` (values are at most 2500
characters and may not hold line breaks), and a short ``python3 -c`` entrypoint reassembles and
runs it after READER_PRELUDE, which provides an independent RecordIO decoder written from the
contract (not the emulator's). Readers report through /opt/ml/model (model.tar.gz) or stdout.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import re
import stat
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.stage.pipe.items import epoch_order
from tests.fixtures.jobs import JobRunner, busybox_request, channel, python_reader_members

pytestmark = [pytest.mark.docker, pytest.mark.timeout(60)]

DATA = "/opt/ml/input/data"
MIB = 1024 * 1024
MAGIC_BYTES = bytes.fromhex("0a23d7ce")  # uint32 0xCED7230A, little-endian

MakeFiles = Callable[[dict[str, bytes]], Path]

READER_PRELUDE = '''
import hashlib, json, os, stat, struct, sys, time, traceback

DATA = "/opt/ml/input/data"
MODEL = "/opt/ml/model"
MAGIC = 0xCED7230A


def _fail(kind, value, tb):
    with open("/opt/ml/output/failure", "w") as failure:
        failure.write("".join(traceback.format_exception(kind, value, tb))[-900:])
    sys.__excepthook__(kind, value, tb)


sys.excepthook = _fail


def fifo(channel, epoch, timeout=20.0):
    """The FIFO of an epoch once it exists (ml-io polls the same way)."""
    path = f"{DATA}/{channel}_{epoch}"
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
    assert stat.S_ISFIFO(os.stat(path).st_mode), f"{path} is not a FIFO"
    return path


def read_epoch(channel, epoch, limit=None):
    chunks, got = [], 0
    with open(fifo(channel, epoch), "rb", buffering=0) as pipe:
        while limit is None or got < limit:
            chunk = pipe.read(1 << 20 if limit is None else min(1 << 20, limit - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    return b"".join(chunks)


def records(data):
    """RecordIO payloads: magic, LE length (flag bits must be 0), payload, zero padding."""
    payloads, at = [], 0
    while at < len(data):
        assert at + 8 <= len(data), f"truncated header at {at}"
        magic, word = struct.unpack_from("<II", data, at)
        assert magic == MAGIC, f"bad magic {magic:#x} at {at}"
        assert word >> 29 == 0, f"continuation flag {word >> 29} at {at}"
        length = word & ((1 << 29) - 1)
        start, end = at + 8, at + 8 + length
        assert end <= len(data), f"truncated payload at {at}"
        payloads.append(data[start:end])
        pad = -length % 4
        assert data[end : end + pad] == bytes(pad), f"bad padding after {end}"
        at = end + pad
    return payloads


def sha(data):
    return hashlib.sha256(data).hexdigest()


def report(**values):
    with open(f"{MODEL}/report.json", "w") as out:
        json.dump(values, out)

'''


@pytest.fixture(autouse=True)
def no_feeder_threads() -> Iterator[None]:
    yield
    assert [t.name for t in threading.enumerate() if t.name.startswith("pipe-feeder-")] == []


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def in_key_order(files: dict[str, bytes]) -> bytes:
    return b"".join(files[name] for name in sorted(files))


shell_job = functools.partial(busybox_request, mode="Pipe", max_runtime=40)


def python_job(jobs: JobRunner, body: str, channels: list[dict[str, Any]], **members: Any) -> Any:
    """A request whose container runs READER_PRELUDE + ``body`` in the python image."""
    code = READER_PRELUDE + textwrap.dedent(body)
    return jobs.request(
        InputDataConfig=channels, **python_reader_members(code, "Pipe", 40, **members)
    )


def run_clean(jobs: JobRunner, request: dict[str, Any], status: str = "Completed") -> Any:
    """Run a job; check its status and that nothing is left: containers, network, work dir
    (with its FIFOs), feeder threads."""
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == status, record.get("FailureReason")
    assert jobs.leftovers(request["TrainingJobName"]) == []
    assert [p for p in jobs.work_root.rglob("*") if stat.S_ISFIFO(p.lstat().st_mode)] == []
    assert [t.name for t in threading.enumerate() if t.name.startswith("pipe-feeder-")] == []
    return record


def report(jobs: JobRunner, record: dict[str, Any]) -> Any:
    return json.loads(jobs.model(record)["report.json"])


def stdout(jobs: JobRunner) -> list[str]:
    return [line for _, line in jobs.logs]


def pipe_notice(jobs: JobRunner, name: str = "train", host: str = "algo-1") -> str:
    prefix = f"{host} pipe {name}: "
    found = [n for n in jobs.notices if n.startswith(prefix) and "epoch(s)" in n]
    assert len(found) == 1, jobs.notices
    return found[0][len(prefix) :]


def decode(data: bytes) -> list[bytes]:
    """The test's own RecordIO decoder: explicit magic bytes, length, zero padding to 4."""
    payloads, at = [], 0
    while at < len(data):
        assert data[at : at + 4] == MAGIC_BYTES, f"bad magic at {at}"
        word = int.from_bytes(data[at + 4 : at + 8], "little")
        assert word < 1 << 29, "continuation flag set"
        end = at + 8 + word
        padded = at + 8 + (word + 3) // 4 * 4
        assert padded <= len(data), "truncated record"
        assert data[end:padded] == b"\0" * (padded - end), "padding is not zeros"
        payloads.append(data[at + 8 : end])
        at = padded
    return payloads


# --- raw epochs ---------------------------------------------------------------------------


def test_every_epoch_has_the_bytes_of_the_source(jobs: JobRunner, make_files: MakeFiles) -> None:
    files = {
        "a.bin": os.urandom(2 * MIB + 3),  # more than the pipe buffer
        "b/c.txt": b"text\n",
        "b/empty": b"",
        "z.bin": os.urandom(100_000),
    }
    script = f"for e in 0 1 2; do sha256sum {DATA}/train_$e; done"
    record = run_clean(jobs, shell_job(jobs, script, [channel("train", make_files(files))]))
    expected = [f"{sha(in_key_order(files))}  {DATA}/train_{e}" for e in range(3)]
    assert stdout(jobs) == expected
    assert pipe_notice(jobs).startswith("3 epoch(s) read to the end, 0 closed early")
    assert record["SecondaryStatus"] == "Completed"


def test_an_epoch_closed_early_then_the_next_epoch_complete(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    files = {"big.bin": os.urandom(4 * MIB), "small.bin": b"tail"}
    script = (
        f"head -c 1000 {DATA}/train_0 | sha256sum; "
        f"sha256sum < {DATA}/train_1; "
        f": < {DATA}/train_2; "  # opened and closed without reading
        f"sha256sum < {DATA}/train_3"
    )
    run_clean(jobs, shell_job(jobs, script, [channel("train", make_files(files))]))
    whole = in_key_order(files)
    assert [line.split()[0] for line in stdout(jobs)] == [sha(whole[:1000]), sha(whole), sha(whole)]
    assert pipe_notice(jobs).startswith("2 epoch(s) read to the end, 2 closed early")


def test_zero_byte_objects_give_empty_epochs_and_empty_records(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    empty = make_files({"e1": b"", "e2": b"", "sub/e3": b""})
    script = (
        f"for e in 0 1 2; do echo raw $(wc -c < {DATA}/raw_$e); done; "
        f"cat {DATA}/rec_0 > /opt/ml/model/rec_0"
    )
    channels = [channel("raw", empty), channel("rec", empty, RecordWrapperType="RecordIO")]
    record = run_clean(jobs, shell_job(jobs, script, channels))
    assert stdout(jobs) == ["raw 0"] * 3
    raw = jobs.model(record)["rec_0"]
    assert raw == (MAGIC_BYTES + bytes(4)) * 3  # three records of length 0, no padding
    assert decode(raw) == [b"", b"", b""]


def test_a_non_root_user_reads_the_fifos(jobs: JobRunner, make_files: MakeFiles) -> None:
    files = {"a": b"readable by anyone\n"}
    script = f"id -u; sha256sum < {DATA}/train_0"
    algorithm = {"TrainingImage": "sagemaker-emulator/probe-nonroot:latest"}
    request = shell_job(jobs, script, [channel("train", make_files(files))], algorithm=algorithm)
    run_clean(jobs, request)
    assert stdout(jobs) == ["65534", f"{sha(files['a'])}  -"]


def test_two_channels_read_at_once_each_get_their_bytes(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    train = {"t1": os.urandom(3 * MIB), "t2": os.urandom(12345)}
    validation = {"v1": os.urandom(2 * MIB + 1), "v2": b"v"}
    body = """
        pipes = {c: open(fifo(c, 0), "rb", buffering=0) for c in ("train", "validation")}
        hashes = {c: hashlib.sha256() for c in pipes}
        turns = 0
        while pipes:
            turns += 1
            for name in sorted(pipes):
                chunk = pipes[name].read(65536)
                if chunk:
                    hashes[name].update(chunk)
                else:
                    pipes.pop(name).close()
        # Epoch 1 in the other order: validation to the end first.
        second = {c: sha(read_epoch(c, 1)) for c in ("validation", "train")}
        report(first={c: h.hexdigest() for c, h in hashes.items()}, second=second, turns=turns)
    """
    channels = [channel("train", make_files(train)), channel("validation", make_files(validation))]
    seen = report(jobs, run_clean(jobs, python_job(jobs, body, channels)))
    expected = {"train": sha(in_key_order(train)), "validation": sha(in_key_order(validation))}
    assert seen["first"] == expected
    assert seen["second"] == expected
    assert seen["turns"] > 30  # really interleaved: 64 KiB at a time from each
    assert pipe_notice(jobs, "train").startswith("2 epoch(s) read to the end")
    assert pipe_notice(jobs, "validation").startswith("2 epoch(s) read to the end")


def test_the_next_epochs_fifo_exists_before_the_current_epochs_eof(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    files = {"big": os.urandom(3 * MIB)}  # 3x the pipe buffer: EOF is far away after 1 byte
    body = """
        at_start = sorted(os.listdir(DATA))
        seen = []
        for epoch in range(3):
            with open(fifo("train", epoch), "rb", buffering=0) as pipe:
                first = pipe.read(1)
                following = f"{DATA}/train_{epoch + 1}"
                exists = os.path.exists(following)
                is_fifo = exists and stat.S_ISFIFO(os.stat(following).st_mode)
                data = first + b"".join(iter(lambda: pipe.read(1 << 20), b""))
            seen.append({"next_exists": exists, "next_is_fifo": is_fifo, "sha": sha(data)})
        report(at_start=at_start, seen=seen)
    """
    seen = report(
        jobs, run_clean(jobs, python_job(jobs, body, [channel("train", make_files(files))]))
    )
    assert seen["at_start"] == ["train_0", "train_1"]
    expected = {"next_exists": True, "next_is_fifo": True, "sha": sha(files["big"])}
    assert seen["seen"] == [expected] * 3


# --- framing, compression, order --------------------------------------------------------


def test_recordio_framing_decoded_independently(jobs: JobRunner, make_files: MakeFiles) -> None:
    files = {f"r{n}": os.urandom(n) for n in range(6)}  # lengths 0..5: every padding
    files["r6"] = os.urandom(MIB + 3)  # a record bigger than a write chunk, padded
    body = """
        raw = read_epoch("train", 0)
        with open(f"{MODEL}/epoch_0.rec", "wb") as out:
            out.write(raw)
        config = json.load(open("/opt/ml/input/config/inputdataconfig.json"))
        report(
            epochs=[[sha(p) for p in records(raw)]]
            + [[sha(p) for p in records(read_epoch("train", e))] for e in (1, 2)],
            config=config,
        )
    """
    request = python_job(
        jobs, body, [channel("train", make_files(files), RecordWrapperType="RecordIO")]
    )
    record = run_clean(jobs, request)
    seen = report(jobs, record)
    expected = [sha(files[name]) for name in sorted(files)]
    assert seen["epochs"] == [expected] * 3
    assert seen["config"] == {
        "train": {
            "TrainingInputMode": "Pipe",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "RecordIO",
        }
    }
    raw = jobs.model(record)["epoch_0.rec"]
    assert decode(raw) == [files[name] for name in sorted(files)]
    assert len(raw) == sum(8 + (len(p) + 3) // 4 * 4 for p in files.values())


@pytest.mark.parametrize("record_io", [False, True], ids=["raw", "recordio"])
def test_gzip_objects_are_decompressed(
    jobs: JobRunner, make_files: MakeFiles, record_io: bool
) -> None:
    big = b"".join(b"line %08d of a compressible object\n" % n for n in range(600_000))  # ~23 MB
    two = [os.urandom(70_000), b"second member\n"]
    plain = {"a.gz": big, "b.gz": b"".join(two), "c.gz": b""}
    packed = {
        "a.gz": gzip.compress(big, compresslevel=1),
        "b.gz": gzip.compress(two[0]) + gzip.compress(two[1]),  # two gzip members
        "c.gz": gzip.compress(b""),
    }
    body = """
        data = [read_epoch("train", e) for e in (0, 1)]
        if RECORD_IO:
            report(epochs=[[sha(p) for p in records(d)] for d in data])
        else:
            report(epochs=[sha(d) for d in data])
    """
    wrapper = "RecordIO" if record_io else "None"
    ch = channel("train", make_files(packed), CompressionType="Gzip", RecordWrapperType=wrapper)
    request = python_job(jobs, f"RECORD_IO = {record_io}\n" + textwrap.dedent(body), [ch])
    seen = report(jobs, run_clean(jobs, request))
    if record_io:  # the big object is spooled (over 16 MiB: on disk) to learn its length
        assert seen["epochs"] == [[sha(plain[name]) for name in sorted(plain)]] * 2
    else:
        assert seen["epochs"] == [sha(in_key_order(plain))] * 2


def shuffled_orders(jobs: JobRunner, data: Path, seed: int) -> list[list[str]]:
    """The object names of epochs 0, 1, 2 in the order the container read them."""
    script = f"for e in 0 1 2; do echo $(cat {DATA}/train_$e); done"
    jobs.logs.clear()
    run_clean(jobs, shell_job(jobs, script, [channel("train", data, ShuffleConfig={"Seed": seed})]))
    return [line.split() for line in stdout(jobs)]


def test_shuffle_config_orders_are_seeded_and_change_every_epoch(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    names = [f"obj-{n:02}" for n in range(12)]
    data = make_files({name: f"{name}\n".encode() for name in names})
    first = shuffled_orders(jobs, data, seed=42)
    second = shuffled_orders(jobs, data, seed=42)
    other = shuffled_orders(jobs, data, seed=7)

    assert first == second  # same seed: same order of every epoch, job after job
    assert all(sorted(order) == names for order in first + other)
    assert len({tuple(order) for order in first}) == 3  # a new order every epoch
    assert first != other
    # The documented rule (pipe_items.epoch_order): random.Random(f"{seed}:{epoch}").
    assert first == [[names[i] for i in epoch_order(12, e, 42)] for e in range(3)]


# --- distribution and modes -----------------------------------------------------------------


def test_sharded_by_s3_key_on_one_instance_gets_everything(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    files = {f"part-{n}": f"part {n}\n".encode() for n in range(7)}
    ch = channel("train", make_files(files))
    ch["DataSource"]["S3DataSource"]["S3DataDistributionType"] = "ShardedByS3Key"
    script = (
        f"cp /opt/ml/input/config/inputdataconfig.json /opt/ml/model/; "
        f"for e in 0 1; do sha256sum < {DATA}/train_$e; done"
    )
    record = run_clean(jobs, shell_job(jobs, script, [ch]))
    assert stdout(jobs) == [f"{sha(in_key_order(files))}  -"] * 2
    config = json.loads(jobs.model(record)["inputdataconfig.json"])
    assert config["train"]["S3DistributionType"] == "ShardedByS3Key"
    assert config["train"]["TrainingInputMode"] == "Pipe"


def test_sharded_by_s3_key_on_two_instances_splits_the_objects(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    files = {f"part-{n}": f"part {n}\n".encode() for n in range(5)}
    ch = channel("train", make_files(files))
    ch["DataSource"]["S3DataSource"]["S3DataDistributionType"] = "ShardedByS3Key"
    script = f"cat {DATA}/train_0 > /opt/ml/model/$(hostname)"
    resources = {"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1}
    record = run_clean(jobs, shell_job(jobs, script, [ch], ResourceConfig=resources))
    model = jobs.model(record)
    # Round-robin over sorted keys (plan.py): algo-1 gets 0, 2, 4; algo-2 gets 1, 3.
    assert model["algo-1"] == files["part-0"] + files["part-2"] + files["part-4"]
    assert model["algo-2"] == files["part-1"] + files["part-3"]


MIXED_BODY = """
    config = json.load(open("/opt/ml/input/config/inputdataconfig.json"))
    listing = sorted(os.listdir(DATA))
    seen = {}
    for name, settings in sorted(config.items()):
        if settings["TrainingInputMode"] == "Pipe":
            seen[name] = sha(read_epoch(name, 0))
        else:
            root = f"{DATA}/{name}"
            paths = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
            seen[name] = {os.path.relpath(p, root): sha(open(p, "rb").read()) for p in paths}
    report(config=config, listing=listing, seen=seen)
"""


@pytest.mark.parametrize(
    ("job_mode", "stream_mode", "files_mode"),
    [("Pipe", None, "File"), ("File", "Pipe", None)],
    ids=["job-pipe-channel-file", "job-file-channel-pipe"],
)
def test_mixed_modes_each_channel_gets_its_effective_mode(
    jobs: JobRunner,
    make_files: MakeFiles,
    job_mode: str,
    stream_mode: str | None,
    files_mode: str | None,
) -> None:
    stream = {"s1": os.urandom(1500), "s2": b"streamed\n"}
    copied = {"f1.txt": b"copied\n", "sub/f2.bin": os.urandom(2000)}
    channels = [
        channel(
            "stream", make_files(stream), **({"InputMode": stream_mode} if stream_mode else {})
        ),
        channel("files", make_files(copied), **({"InputMode": files_mode} if files_mode else {})),
    ]
    request = python_job(jobs, MIXED_BODY, channels, algorithm={"TrainingInputMode": job_mode})
    seen = report(jobs, run_clean(jobs, request))
    assert {name: c["TrainingInputMode"] for name, c in seen["config"].items()} == {
        "stream": "Pipe",
        "files": "File",
    }
    assert seen["listing"] == ["files", "stream_0", "stream_1"]
    assert seen["seen"] == {
        "files": {name: sha(content) for name, content in copied.items()},
        "stream": sha(in_key_order(stream)),
    }


# --- augmented manifests -------------------------------------------------------------------


def test_augmented_manifest_with_recordio_streams_refs_and_values(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    images = make_files({f"img{n}.bin": os.urandom(1000 * n + 1) for n in range(4)})
    labels: list[object] = [3, "cat", 0.5, {"box": [1, 2]}]
    encoded = [b"3", b"cat", b"0.5", b'{"box":[1,2]}']
    lines = []
    for n, label in enumerate(labels):
        ref = str(images / f"img{n}.bin")
        ref = f"file://{ref}" if n == 1 else ref  # an absolute path or a file:// URI
        lines.append(json.dumps({"source-ref": ref, "label": label, "unused": "no"}))
    manifest = make_files({"train.manifest": ("\n".join(lines) + "\n").encode()})
    ch = channel("train", manifest / "train.manifest", RecordWrapperType="RecordIO")
    ch["DataSource"]["S3DataSource"].update(
        S3DataType="AugmentedManifestFile", AttributeNames=["source-ref", "label"]
    )
    ch["ShuffleConfig"] = {"Seed": 5}
    body = """
        raw = read_epoch("train", 0)
        with open(f"{MODEL}/epoch_0.rec", "wb") as out:
            out.write(raw)
        second = read_epoch("train", 1)
        report(epochs=[[sha(p) for p in records(raw)], [sha(p) for p in records(second)]])
    """
    record = run_clean(jobs, python_job(jobs, body, [ch]))
    seen = report(jobs, record)
    image_bytes = [(images / f"img{n}.bin").read_bytes() for n in range(4)]

    def expected(epoch: int) -> list[bytes]:
        # Lines are shuffled as units: each image stays followed by its own label.
        return [p for n in epoch_order(4, epoch, 5) for p in (image_bytes[n], encoded[n])]

    assert decode(jobs.model(record)["epoch_0.rec"]) == expected(0)
    assert seen["epochs"] == [[sha(p) for p in expected(e)] for e in (0, 1)]
    assert expected(0) != expected(1)


# --- readers that do not read ------------------------------------------------------------


def test_a_reader_that_never_opens_the_pipes_ends_promptly(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    data = make_files({"big": os.urandom(4 * MIB)})
    channels = [channel("train", data), channel("validation", data, RecordWrapperType="RecordIO")]
    script = f"ls {DATA} > /opt/ml/model/listing"
    started = time.monotonic()
    record = run_clean(jobs, shell_job(jobs, script, channels))
    assert time.monotonic() - started < 10
    assert jobs.model(record)["listing"].decode().split() == [
        "train_0",
        "train_1",
        "validation_0",
        "validation_1",
    ]
    for name in ("train", "validation"):
        assert (
            pipe_notice(jobs, name)
            == "0 epoch(s) read to the end, 0 closed early, 0 bytes streamed"
        )


def test_a_reader_dying_mid_epoch_fails_the_job_and_leaves_nothing(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    data = make_files({"big": os.urandom(4 * MIB)})
    script = f"head -c 10 {DATA}/train_0 > /dev/null; exec 3< {DATA}/train_1; exit 3"
    record = run_clean(jobs, shell_job(jobs, script, [channel("train", data)]), "Failed")
    assert record["FailureReason"] == "AlgorithmError: , exit code: 3"
    # Epoch 0 closed early; epoch 1 too, unless stop() came before the feeder saw the close.
    assert re.match(r"0 epoch\(s\) read to the end, [12] closed early", pipe_notice(jobs))


def test_a_reader_holding_a_full_pipe_is_stopped_at_max_runtime(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    data = make_files({"big": os.urandom(4 * MIB)})
    # Open the FIFO and never read: the feeder waits for room until the job is stopped.
    script = f"trap 'exit 143' TERM; exec 3< {DATA}/train_0; sleep 30 & wait"
    request = shell_job(jobs, script, [channel("train", data)])
    request["StoppingCondition"] = {"MaxRuntimeInSeconds": 1}
    started = time.monotonic()
    record = run_clean(jobs, request, "Stopped")
    assert time.monotonic() - started < 10
    assert record["SecondaryStatus"] == "MaxRuntimeExceeded"
    # The reader's exit may end the epoch (closed early) before stop() does: either is right.
    assert re.match(r"0 epoch\(s\) read to the end, [01] closed early", pipe_notice(jobs))
