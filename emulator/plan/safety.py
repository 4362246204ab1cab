"""Host paths the emulator will not hand to a training container unless told to.

A channel's data is copied, streamed or mounted into a container that runs someone's training
code; a checkpoint location is copied in and mirrored back (deletions included); the output
location is written by the emulator. So a local location is refused when it is, is inside, or
is a parent of (and so would expose) one of these:

    ~/.aws ~/.ssh ~/.docker ~/.gnupg ~/.kube   credentials of the user running the emulator
    /etc /proc /sys /dev                       the host's configuration and kernel interfaces
    /var/run/docker.sock /run/docker.sock      the Docker socket (root on the host), and the
                                               unix socket DOCKER_HOST names

``/`` and the user's home are refused as parents of those. Paths are compared both as written
and with symbolic links resolved, and every file a local channel lists is checked too (a link
inside a data folder pointing at ~/.ssh/id_rsa is refused, and so is every file of a linked
folder inside ~/.ssh: listings follow links to folders, storage/local.py).
``--allow-sensitive-paths`` (``RunOptions.allow_sensitive_paths``) turns the check off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from emulator.errors import RequestInvalid
from emulator.request.spec import JobSpec
from emulator.storage.base import Entry
from emulator.storage.local import local_path
from emulator.storage.uris import is_local_uri

HOME_SECRETS = (".aws", ".ssh", ".docker", ".gnupg", ".kube")
SYSTEM_PATHS = ("/etc", "/proc", "/sys", "/dev")
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
OVERRIDE_HINT = "pass --allow-sensitive-paths (RunOptions.allow_sensitive_paths) to allow it"


def sensitive_paths() -> list[Path]:
    """Every sensitive path, as written and with links resolved."""
    home = Path.home()
    paths = [home / name for name in HOME_SECRETS]
    paths += [Path(p) for p in (*SYSTEM_PATHS, *DOCKER_SOCKETS)]
    docker_host = os.environ.get("DOCKER_HOST", "")
    if docker_host.startswith("unix://"):
        paths.append(Path(docker_host.removeprefix("unix://")))
    resolved = [Path(os.path.realpath(p)) for p in paths]
    return list(dict.fromkeys(paths + resolved))


def _forms(path: Path) -> list[Path]:
    absolute = Path(os.path.abspath(path))
    return list(dict.fromkeys([absolute, Path(os.path.realpath(absolute))]))


def exposes(location: Path, sensitive: Iterable[Path]) -> Path | None:
    """The sensitive path that ``location`` is, lies inside, or contains; else None."""
    for form in _forms(location):
        for secret in sensitive:
            if form == secret or secret in form.parents or form in secret.parents:
                return secret
    return None


def _problem(field: str, location: str, secret: Path) -> str:
    return (
        f"{field}: {location} exposes the sensitive host path {secret} to the training "
        f"container; choose another location, or {OVERRIDE_HINT}"
    )


def check_locations(spec: JobSpec) -> None:
    """Refuse local channel, checkpoint and output locations that expose a sensitive path."""
    sensitive = sensitive_paths()
    named = [
        (f"InputDataConfig[{c.name}].DataSource.S3DataSource.S3Uri", c.source.uri)
        for c in spec.channels
    ]
    if spec.checkpoint is not None:
        named.append(("CheckpointConfig.S3Uri", spec.checkpoint.uri))
    named += [(f"{folder.member}.S3OutputPath", folder.uri) for folder in spec.output_folders]
    named.append(("OutputDataConfig.S3OutputPath", spec.output_path))
    problems = []
    for field, uri in named:
        if not is_local_uri(uri):
            continue
        secret = exposes(local_path(uri), sensitive)
        if secret is not None:
            problems.append(_problem(field, uri, secret))
    if problems:
        raise RequestInvalid(problems)


def check_entries(channel: str, entries: Iterable[Entry]) -> None:
    """Refuse a local channel whose listed files lie inside a sensitive path (through links,
    or a manifest naming them)."""
    sensitive = sensitive_paths()
    for entry in entries:
        if not Path(entry.location).is_absolute():
            continue  # an S3 key
        target = Path(os.path.realpath(entry.location))
        for secret in sensitive:
            if target == secret or secret in target.parents:
                raise RequestInvalid(
                    [
                        _problem(
                            f"InputDataConfig[{channel}] file {entry.relative_path}",
                            entry.location,
                            secret,
                        )
                    ]
                )
