"""Build the offline images the demo, tests and benchmarks use (no registry is ever contacted).

    sagemaker-emulator/busybox           FROM scratch + Debian's busybox-static
    sagemaker-emulator/probe             reports what it sees (tests of the container contract)
    sagemaker-emulator/probe-entrypoint  the probe behind an image ENTRYPOINT
    sagemaker-emulator/probe-nonroot     the probe as USER nobody
    sagemaker-emulator/no-train          neither ENTRYPOINT nor `train`
    sagemaker-emulator/python            Debian bookworm's python3, rootfs from mmdebstrap
    sagemaker-emulator/demo              the demo training job (examples/demo)
    sagemaker-emulator/python-build      python plus gcc and Python's headers (build stages only)
    sagemaker-emulator/toolkit           python plus SageMaker's training toolkit (script mode)

Each image is rebuilt only when what it is built from changed (its directory, its parent
images); ``--force`` rebuilds the selected ones. Slow steps are cached under build/: the
Debian rootfs tarballs and the toolkit's Python packages (downloaded from PyPI on this host,
keyed by containers/toolkit/requirements.txt). Run: python build.py [IMAGE ...]; without
IMAGE, all but the opt-in python-build and toolkit (see OPT_IN).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import platform
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
DEBIAN_SUITE = "bookworm"
PYTHON_VERSION = "3.11"  # bookworm's python3
GLIBC_MINOR = 36  # bookworm's glibc 2.36


def say(message: str) -> None:
    print(f"images: {message}", flush=True)


def build_dockerfile(client: docker.DockerClient, name: str, context: Path, digest: str) -> None:
    tag = f"{PREFIX}/{name}:latest"
    say(f"building {tag}")
    try:
        replaced: str | None = client.images.get(tag).id
    except docker.errors.ImageNotFound:
        replaced = None
    try:
        image, _ = client.images.build(
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
    remove_leftovers(client, replaced if replaced != image.id else None)


# A Dockerfile's build stages carry this label: the images the classic builder keeps of them
# (the toolkit's: its compiler, wheels and staged install, 400 MB) are removed after a build.
STAGE_LABEL = "sagemaker-emulator.build-stage"


def remove_leftovers(client: docker.DockerClient, replaced: str | None) -> None:
    """Remove the untagged images of build stages and the image a build replaced: each
    rebuild would leave them behind. One still in use (a container, a child) is kept."""
    stale = [
        str(image.id)
        for image in client.images.list(all=True, filters={"label": STAGE_LABEL})
        if not image.tags
    ]
    for image_id in [*stale, *([replaced] if replaced else [])]:
        # Kept when in use; gone already when removed with an image above it.
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image_id)


def build_busybox(client: docker.DockerClient, digest: str) -> None:
    if not BUSYBOX_BINARY.exists():
        sys.exit("images: /bin/busybox is missing: apt-get install busybox-static (make engine)")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(HERE / "busybox", tmp, dirs_exist_ok=True)
        shutil.copy2(BUSYBOX_BINARY, Path(tmp, "busybox"))
        build_dockerfile(client, "busybox", Path(tmp), digest)


# Debian packages of each rootfs image, on top of the essential set.
ROOTFS_PACKAGES = {
    "python": ["python3", "ca-certificates"],
    # What building a CPython extension needs (the toolkit's gethostname), and nothing else.
    "python-build": ["python3", "libpython3.11-dev", "gcc", "libc6-dev"],
}


def debian_rootfs(name: str) -> Path:
    """A Debian bookworm rootfs with ROOTFS_PACKAGES[name], cached under build/ across image
    rebuilds."""
    tarball = BUILD / f"{name}-rootfs.tar"
    if tarball.exists():
        return tarball
    if not shutil.which("mmdebstrap"):
        sys.exit("images: mmdebstrap is missing: apt-get install mmdebstrap (make engine)")
    BUILD.mkdir(exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    packages = ",".join(ROOTFS_PACKAGES[name])
    say(f"making a Debian rootfs with {packages} (mmdebstrap, about a minute)")
    excludes = ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*"]
    command = [
        "mmdebstrap",
        "--variant=essential",
        f"--include={packages}",
        *[f"--dpkgopt=path-exclude={pattern}" for pattern in excludes],
        DEBIAN_SUITE,
        str(partial),
        DEBIAN_MIRROR,
    ]
    log_path = BUILD / f"mmdebstrap-{name}.log"
    with open(log_path, "w") as log:
        if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
            sys.exit(f"images: mmdebstrap failed, see {log_path}")
    partial.rename(tarball)
    return tarball


def import_rootfs(client: docker.DockerClient, name: str) -> None:
    tarball = debian_rootfs(name)
    say(f"importing {PREFIX}/{name}:latest")
    client.api.import_image_from_file(
        str(tarball),
        repository=f"{PREFIX}/{name}",
        tag="latest",
        changes=[
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV PYTHONUNBUFFERED=1",
            'CMD ["python3"]',
        ],
    )


# The toolkit's packages that PyPI has no wheel of: pip builds them in the image's build stage.
TOOLKIT_SDISTS = ["sagemaker-training", "inotify-simple"]
TOOLKIT_WHEELS = BUILD / "toolkit-wheels"


def toolkit_wheels() -> Path:
    """The files of containers/toolkit/requirements.txt (wheels for the python image's CPython
    3.11 on glibc 2.36, plus TOOLKIT_SDISTS), downloaded from PyPI on this host once: a
    container build needs no network."""
    requirements = HERE / "toolkit" / "requirements.txt"
    stamp = TOOLKIT_WHEELS / ".requirements.sha256"
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return TOOLKIT_WHEELS
    shutil.rmtree(TOOLKIT_WHEELS, ignore_errors=True)
    say("downloading the toolkit's Python packages from PyPI (pip download)")
    arch = platform.machine()
    # pip does not widen a manylinux_2_N platform to the older glibc versions it includes
    # (it does widen the legacy manylinux2014, which some wheels are tagged with only).
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR, 4, -1)]
    platforms.append(f"manylinux2014_{arch}")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",  # requirements.txt pins the whole tree
        f"--dest={TOOLKIT_WHEELS}",
        "--implementation=cp",
        f"--python-version={PYTHON_VERSION}",
        f"--abi=cp{PYTHON_VERSION.replace('.', '')}",
        *[f"--platform={name}" for name in platforms],
        "--only-binary=:all:",
        f"--no-binary={','.join(TOOLKIT_SDISTS)}",
        f"--requirement={requirements}",
    ]
    if subprocess.run(command).returncode != 0:
        sys.exit("images: pip download of the toolkit's packages failed (is PyPI reachable?)")
    stamp.write_text(wanted)
    return TOOLKIT_WHEELS


def build_toolkit(client: docker.DockerClient, digest: str) -> None:
    wheels = toolkit_wheels()
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(HERE / "toolkit", tmp, dirs_exist_ok=True)
        shutil.copytree(wheels, Path(tmp, "wheels"), ignore=shutil.ignore_patterns(".*"))
        build_dockerfile(client, "toolkit", Path(tmp), digest)


# Image -> the local images it is built FROM (their ids are part of the build digest).
PARENTS = {
    "probe": ["busybox"],
    "probe-entrypoint": ["probe"],
    "probe-nonroot": ["probe"],
    "no-train": ["busybox"],
    "demo": ["python"],
    "toolkit": ["python", "python-build"],
}
DIGEST_LABEL = "sagemaker-emulator.build-digest"


def context_digest(client: docker.DockerClient, name: str) -> str:
    """What an image is built from: its directory's files and its parent images' ids."""
    digest = hashlib.sha256()
    for path in sorted((HERE / name).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(HERE).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    if name == "busybox" and BUSYBOX_BINARY.exists():
        digest.update(BUSYBOX_BINARY.read_bytes())
    for parent in PARENTS.get(name, []):
        digest.update(str(client.images.get(f"{PREFIX}/{parent}:latest").id).encode())
    return digest.hexdigest()


def up_to_date(client: docker.DockerClient, name: str, digest: str) -> bool:
    try:
        image = client.images.get(f"{PREFIX}/{name}:latest")
    except docker.errors.ImageNotFound:
        return False
    return name in ROOTFS_PACKAGES or (image.labels or {}).get(DIGEST_LABEL) == digest


ORDER = [
    "busybox",
    "probe",
    "probe-entrypoint",
    "probe-nonroot",
    "no-train",
    "python",
    "demo",
    "python-build",
    "toolkit",
]
# Built only when asked for (`build.py toolkit`, `make toolkit-image`; the tests that use it
# ask): a cold build takes 1.5 to 2.5 minutes (a second rootfs with gcc, 80 MB from PyPI).
OPT_IN = {"python-build", "toolkit"}


def with_parents(names: list[str]) -> set[str]:
    wanted = set(names)
    for name in names:
        wanted |= with_parents(PARENTS.get(name, []))
    return wanted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild images that exist")
    parser.add_argument(
        "images", nargs="*", metavar="IMAGE", help=f"only these (and parents): {', '.join(ORDER)}"
    )
    arguments = parser.parse_args()
    unknown = sorted(set(arguments.images) - set(ORDER))
    if unknown:
        parser.error(f"no such image: {', '.join(unknown)} (one of {', '.join(ORDER)})")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        sys.exit(f"images: no Docker engine answers ({exc}); run `make engine` first")

    BUILD.mkdir(exist_ok=True)
    with open(BUILD / "images.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two builds at once (make, a test) would race
        wanted = with_parents(arguments.images or [n for n in ORDER if n not in OPT_IN])
        build(client, [name for name in ORDER if name in wanted], arguments.force)


def build(client: docker.DockerClient, names: list[str], force: bool) -> None:
    for name in names:
        tag = f"{PREFIX}/{name}:latest"
        digest = context_digest(client, name) if name not in ROOTFS_PACKAGES else ""
        if not force and up_to_date(client, name, digest):
            say(f"{tag} is up to date")
        elif name in ROOTFS_PACKAGES:
            import_rootfs(client, name)
        elif name == "busybox":
            build_busybox(client, digest)
        elif name == "toolkit":
            build_toolkit(client, digest)
        else:
            build_dockerfile(client, name, HERE / name, digest)


if __name__ == "__main__":
    main()
