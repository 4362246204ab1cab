"""A non-root user of the docker group runs the emulator: every file a root training container
wrote into /opt/ml/model and /opt/ml/output/data is packed, whatever its permissions (a 0700
directory as tempfile.mkdtemp makes, a 0600 file as write-then-rename makes, a 0000 file),
byte-exact, for a local or an S3 output, compressed or not, from every host. A file that cannot
be read at all fails the job naming it: never a silent omission.

Real: the user and its runs come from ``tests/test_non_root.py`` (a user created for the test,
in the ``docker`` group; the CLI runs as that user), the probe image (busybox) runs as root.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from emulator.finish.artifacts import pack
from tests.fixtures.cli import leftovers
from tests.fixtures.jobs import PROBE, probe_request
from tests.fixtures.nonroot import Python, User, needs_root_tools
from tests.fixtures.s3 import S3Server

pytestmark = needs_root_tools


# Run in each area by a root container: what strict programs leave (names of Environment values
# S0.., each at most 512 characters, joined and evaluated by the entrypoint).
WRITER = """set -e
h=$(hostname)
for a in /opt/ml/model /opt/ml/output/data; do
cd $a
mkdir -m 700 private
printf "weights of $h" > private/weights.bin
printf "only $h" > private/$h.txt
mkdir -p private/nested/deeper
seq 1 50000 > private/nested/deeper/numbers.txt
chmod 600 private/nested/deeper/numbers.txt
chmod 700 private/nested private/nested/deeper
printf '\\000\\001\\377renamed' > .partial
chmod 600 .partial
mv .partial final.bin
printf 'no rights at all' > zero
chmod 000 zero
ln -s private/weights.bin link
done
"""
NUMBERS = "".join(f"{i}\n" for i in range(1, 50001)).encode()


def expected(hosts: int) -> dict[str, bytes]:
    """The regular files of either area once merged: algo-1's copy wins every clash."""
    files = {
        "private/weights.bin": b"weights of algo-1",
        "private/nested/deeper/numbers.txt": NUMBERS,
        "final.bin": b"\x00\x01\xffrenamed",
        "zero": b"no rights at all",
    }
    files |= {f"private/algo-{n}.txt": f"only algo-{n}".encode() for n in range(1, hosts + 1)}
    return files


def writer_request(output: str, hosts: int, compression: str) -> dict[str, Any]:
    pieces = [WRITER[i : i + 500] for i in range(0, len(WRITER), 500)]
    names = [f"S{i}" for i in range(len(pieces))]
    return probe_request(
        Path("unused"),
        AlgorithmSpecification={
            "TrainingImage": PROBE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": [
                "/bin/sh",
                "-c",
                'eval "' + "".join(f"${n}" for n in names) + '"',
            ],
        },
        Environment=dict(zip(names, pieces, strict=True)),
        OutputDataConfig={"S3OutputPath": output, "CompressionType": compression},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": hosts, "VolumeSizeInGB": 1},
    )


def members(archive: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {member.name: member for member in tar.getmembers()}


def regular_files(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def check_archive(archive: bytes, hosts: int) -> None:
    """Every file byte-exact, with the mode it was written with; the symlink kept as one."""
    assert regular_files(archive) == expected(hosts)
    found = members(archive)
    assert found["link"].issym() and found["link"].linkname == "private/weights.bin"
    assert found["zero"].mode & 0o7777 == 0
    assert found["final.bin"].mode & 0o7777 == 0o600
    assert found["private/nested/deeper/numbers.txt"].mode & 0o7777 == 0o600
    assert found["private/weights.bin"].uid == 0  # written by the root container


def run_job(user: User, python: Python, request: dict[str, Any], env: dict[str, str]) -> Any:
    interpreter, python_env = python
    request_file = user.root / "request.json"
    request_file.write_text(json.dumps(request))
    os.chown(request_file, user.uid, user.gid)
    result = user.run(
        "-m",
        "emulator",
        "run",
        "--json",
        str(request_file),
        python=interpreter,
        env={**python_env, **env},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(result.stdout)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert leftovers(request["TrainingJobName"], user.tmp) == []  # reading containers too
    return record, result.stderr


@pytest.mark.parametrize(("hosts", "compression"), [(2, "GZIP"), (1, "NONE")])
def test_strict_files_of_a_root_container_are_all_packed_locally(
    user: User, python: Python, hosts: int, compression: str
) -> None:
    request = writer_request(str(user.output), hosts, compression)
    job = request["TrainingJobName"]

    record, stderr = run_job(user, python, request, {})

    folder = user.output / job / "output"
    check_archive((folder / "output.tar.gz").read_bytes(), hosts)
    if compression == "GZIP":
        check_archive((folder / "model.tar.gz").read_bytes(), hosts)
        if hosts > 1:
            assert "written by several hosts" in stderr
    else:
        model = folder / "model"
        found = {
            p.relative_to(model).as_posix(): p.read_bytes()
            for p in model.rglob("*")
            if p.is_file() and not p.is_symlink()
        }
        assert found == expected(hosts)
        assert os.readlink(model / "link") == "private/weights.bin"
        assert record["ModelArtifacts"]["S3ModelArtifacts"].endswith("/output/model/")


@pytest.mark.s3
@pytest.mark.parametrize("compression", ["GZIP", "NONE"])
def test_strict_files_of_a_root_container_reach_s3(
    user: User, python: Python, moto_server: S3Server, compression: str
) -> None:
    bucket = moto_server.new_bucket("nonroot")
    request = writer_request(f"s3://{bucket}/runs", 1, compression)
    job = request["TrainingJobName"]
    env = {
        **moto_server.environ(),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }

    run_job(user, python, request, env)

    objects = moto_server.read_objects(bucket, f"runs/{job}/output/")
    check_archive(objects["output.tar.gz"], 1)
    if compression == "GZIP":
        check_archive(objects["model.tar.gz"], 1)
    else:
        model = {k.removeprefix("model/"): v for k, v in objects.items() if k.startswith("model/")}
        assert model == expected(1)  # S3 has no symlinks: `link` is named in a notice


# -- what cannot be read at all ------------------------------------------------------------

PACKER = """
import sys
from pathlib import Path
from emulator.errors import SourceError
from emulator.finish.artifacts import pack
from emulator.finish.publish import publish_artifacts
from emulator.request.spec import JobSpec, ResourceSpec

tree, out, how = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
try:
    if how == "pack":
        pack([tree], out / "model.tar.gz")
    else:
        spec = JobSpec(name="j", image="i", input_mode="File", channels=(),
                       output_path=str(out), resources=ResourceSpec("ml.m5.large", 1))
        reader = None if how == "publish" else (lambda directory, into: False)
        publish_artifacts(spec, [tree], [], print, read_as_root=reader)
except SourceError as exc:
    print(f"refused: {exc}")
    sys.exit(3)
print("packed")
"""


@pytest.mark.parametrize("how", ["pack", "publish", "publish-no-engine"])
@pytest.mark.parametrize("unreadable", ["0700 dir", "0000 file"])
def test_a_file_the_emulator_cannot_read_fails_naming_it(
    user: User, python: Python, how: str, unreadable: str
) -> None:
    """Without a way to read it as root (no engine at hand, or one that cannot), a file the
    user cannot read is an error naming it; before the fix a 0700 directory was skipped."""
    tree = user.root / "tree"
    (tree / "readable").mkdir(parents=True)
    (tree / "readable" / "a.txt").write_text("a")
    for path in (tree, tree / "readable", tree / "readable" / "a.txt"):
        os.chown(path, user.uid, user.gid)
    if unreadable == "0700 dir":
        (tree / "private").mkdir(mode=0o700)  # root's, as the container left it
        (tree / "private" / "weights.bin").write_text("w")
        secret = tree / "private"
    else:
        secret = tree / "zero"
        secret.write_text("z")
        secret.chmod(0)
    interpreter, env = python

    result = user.run("-c", PACKER, str(tree), str(user.output), how, python=interpreter, env=env)

    assert result.returncode == 3, result.stdout + result.stderr
    assert str(secret) in result.stdout
    assert "cannot be read" in result.stdout


def test_a_readable_tree_never_asks_the_engine(tmp_path: Path) -> None:
    """As root (or with files the user can read), packing reads the files directly."""
    (tmp_path / "model" / "sub").mkdir(parents=True)
    (tmp_path / "model" / "sub" / "w").write_bytes(b"w")
    asked: list[Path] = []

    def reader(directory: Path, into: Any) -> bool:
        asked.append(directory)
        return False

    result = pack([tmp_path / "model"], tmp_path / "model.tar.gz", read_as_root=reader)
    assert result.files == 1
    assert asked == []
