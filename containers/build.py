"""Build the offline images the demo, tests and benchmarks use (no registry is ever contacted).

    sagemaker-emulator/busybox           FROM scratch + Debian's busybox-static
    sagemaker-emulator/probe             reports what it sees (tests of the container contract)
    sagemaker-emulator/probe-entrypoint  the probe behind an image ENTRYPOINT
    sagemaker-emulator/probe-nonroot     the probe as USER nobody
    sagemaker-emulator/no-train          neither ENTRYPOINT nor `train`
    sagemaker-emulator/python            Debian bookworm's python3, rootfs from mmdebstrap
    sagemaker-emulator/demo              the demo training job (examples/demo)

Each image is built only when its tag is missing (``--force`` rebuilds). Run: python build.py
"""

from __future__ import annotations

import argparse
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


def exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_dockerfile(client: docker.DockerClient, name: str, context: Path) -> None:
    tag = f"{PREFIX}/{name}:latest"
    say(f"building {tag}")
    try:
        client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False)
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        sys.exit(f"images: building {tag} failed:\n{log}")


def build_busybox(client: docker.DockerClient) -> None:
    if not BUSYBOX_BINARY.exists():
        sys.exit("images: /bin/busybox is missing: apt-get install busybox-static (make engine)")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(HERE / "busybox", tmp, dirs_exist_ok=True)
        shutil.copy2(BUSYBOX_BINARY, Path(tmp, "busybox"))
        build_dockerfile(client, "busybox", Path(tmp))


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


def build_demo(client: docker.DockerClient) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(HERE / "demo", tmp, dirs_exist_ok=True)
        build_dockerfile(client, "demo", Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild images that exist")
    force = parser.parse_args().force
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        sys.exit(f"images: no Docker engine answers ({exc}); run `make engine` first")

    builders = {
        "busybox": lambda: build_busybox(client),
        "probe": lambda: build_dockerfile(client, "probe", HERE / "probe"),
        "probe-entrypoint": lambda: build_dockerfile(client, "probe-entrypoint", HERE / "probe-entrypoint"),
        "probe-nonroot": lambda: build_dockerfile(client, "probe-nonroot", HERE / "probe-nonroot"),
        "no-train": lambda: build_dockerfile(client, "no-train", HERE / "no-train"),
        "python": lambda: build_python(client),
        "demo": lambda: build_demo(client),
    }
    for name, build in builders.items():
        tag = f"{PREFIX}/{name}:latest"
        if force or not exists(client, tag):
            build()
        else:
            say(f"{tag} is present")


if __name__ == "__main__":
    main()
