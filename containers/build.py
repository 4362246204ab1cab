"""Build the offline images the demo, tests and benchmarks use (no registry is ever contacted).

    sagemaker-emulator/busybox           FROM scratch + Debian's busybox-static
    sagemaker-emulator/probe             reports what it sees (tests of the container contract)
    sagemaker-emulator/probe-entrypoint  the probe behind an image ENTRYPOINT
    sagemaker-emulator/probe-nonroot     the probe as USER nobody
    sagemaker-emulator/no-train          neither ENTRYPOINT nor `train`
    sagemaker-emulator/python            Debian bookworm's python3, rootfs from mmdebstrap
    sagemaker-emulator/demo              the demo training job (examples/demo)

Each image is rebuilt only when what it is built from changed (its directory, its parent
image); ``--force`` rebuilds all. Run: python build.py
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import docker
import docker.errors

HERE = Path(__file__).resolve().parent
BUILD = HERE.parent / "build"
PREFIX = "sagemaker-emulator"
BUSYBOX_BINARY = Path("/bin/busybox")
DEBIAN_MIRROR = "http://deb.debian.org/debian"


def say(message: str) -> None:
    print(f"images: {message}", flush=True)


def build_dockerfile(client: docker.DockerClient, name: str, context: Path, digest: str) -> None:
    tag = f"{PREFIX}/{name}:latest"
    say(f"building {tag}")
    try:
        client.images.build(
            path=str(context),
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            labels={DIGEST_LABEL: digest},
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        sys.exit(f"images: building {tag} failed:\n{log}")


def build_busybox(client: docker.DockerClient, digest: str) -> None:
    if not BUSYBOX_BINARY.exists():
        sys.exit("images: /bin/busybox is missing: apt-get install busybox-static (make engine)")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(HERE / "busybox", tmp, dirs_exist_ok=True)
        shutil.copy2(BUSYBOX_BINARY, Path(tmp, "busybox"))
        build_dockerfile(client, "busybox", Path(tmp), digest)


def python_rootfs() -> Path:
    """A Debian bookworm rootfs with python3, cached under build/ across image rebuilds."""
    tarball = BUILD / "python-rootfs.tar"
    if tarball.exists():
        return tarball
    if not shutil.which("mmdebstrap"):
        sys.exit("images: mmdebstrap is missing: apt-get install mmdebstrap (make engine)")
    BUILD.mkdir(exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    say("making a Debian rootfs with python3 (mmdebstrap, about a minute)")
    excludes = ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*"]
    command = [
        "mmdebstrap",
        "--variant=essential",
        "--include=python3,ca-certificates",
        *[f"--dpkgopt=path-exclude={pattern}" for pattern in excludes],
        "bookworm",
        str(partial),
        DEBIAN_MIRROR,
    ]
    with open(BUILD / "mmdebstrap.log", "w") as log:
        if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
            sys.exit(f"images: mmdebstrap failed, see {BUILD / 'mmdebstrap.log'}")
    partial.rename(tarball)
    return tarball


def build_python(client: docker.DockerClient) -> None:
    tarball = python_rootfs()
    say(f"importing {PREFIX}/python:latest")
    client.api.import_image_from_file(
        str(tarball),
        repository=f"{PREFIX}/python",
        tag="latest",
        changes=[
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV PYTHONUNBUFFERED=1",
            'CMD ["python3"]',
        ],
    )


# Image -> the local image it is built FROM (its id is part of the build digest).
PARENTS = {
    "probe": "busybox",
    "probe-entrypoint": "probe",
    "probe-nonroot": "probe",
    "no-train": "busybox",
    "demo": "python",
}
DIGEST_LABEL = "sagemaker-emulator.build-digest"


def context_digest(client: docker.DockerClient, name: str) -> str:
    """What an image is built from: its directory's files and its parent image's id."""
    digest = hashlib.sha256()
    for path in sorted((HERE / name).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(HERE).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    if name == "busybox" and BUSYBOX_BINARY.exists():
        digest.update(BUSYBOX_BINARY.read_bytes())
    parent = PARENTS.get(name)
    if parent:
        digest.update(client.images.get(f"{PREFIX}/{parent}:latest").id.encode())
    return digest.hexdigest()


def up_to_date(client: docker.DockerClient, name: str, digest: str) -> bool:
    try:
        image = client.images.get(f"{PREFIX}/{name}:latest")
    except docker.errors.ImageNotFound:
        return False
    return name == "python" or (image.labels or {}).get(DIGEST_LABEL) == digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild images that exist")
    force = parser.parse_args().force
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        sys.exit(f"images: no Docker engine answers ({exc}); run `make engine` first")

    order = ["busybox", "probe", "probe-entrypoint", "probe-nonroot", "no-train", "python", "demo"]
    for name in order:
        tag = f"{PREFIX}/{name}:latest"
        digest = context_digest(client, name) if name != "python" else ""
        if not force and up_to_date(client, name, digest):
            say(f"{tag} is up to date")
        elif name == "python":
            build_python(client)
        elif name == "busybox":
            build_busybox(client, digest)
        else:
            build_dockerfile(client, name, HERE / name, digest)


if __name__ == "__main__":
    main()
