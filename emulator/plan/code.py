"""``--code DIR`` (``RunOptions.code_dir``): the user's code mounted read-only at /opt/ml/code in
every host, where SageMaker's framework images find the SDK's ``source_dir``.

The training toolkit (sagemaker-training) reads the code's location from the hyperparameter
``sagemaker_submit_directory`` (or the variable ``SAGEMAKER_SUBMIT_DIRECTORY``): an s3:// URI
of sourcedir.tar.gz, which it downloads and extracts into /opt/ml/code when that directory is
empty, and it runs the entry point from there. With --code the mounted directory IS the code:
such a member is pointed at /opt/ml/code for the containers (hyperparameters.json and the
environment; the record keeps the request as given), so the toolkit neither downloads nor
writes, whatever the URI named, and a notice says so.

Refused before anything exists: a DIR that is missing or not a directory, one that exposes a
sensitive host path (plan/safety.py; ``allow_sensitive_paths`` turns that off), and a
CheckpointConfig.LocalPath at, inside or above /opt/ml/code (two mounts on one path). Links
inside DIR are not followed on the host: a bind mount shows them as links, resolved in the
container's own file system.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Protocol

from emulator.engine import Mount
from emulator.errors import EmulatorError, RequestInvalid
from emulator.plan.layout import CONTAINER_ML
from emulator.plan.safety import OVERRIDE_HINT, exposes, sensitive_paths
from emulator.request.spec import JobSpec

CODE_DIR = f"{CONTAINER_ML}/code"
SUBMIT_DIRECTORY = "sagemaker_submit_directory"  # the SDK's hyperparameter
SUBMIT_DIRECTORY_ENV = "SAGEMAKER_SUBMIT_DIRECTORY"
FLAG = "--code (RunOptions.code_dir)"


def check_code_dir(code_dir: Path, *, allow_sensitive_paths: bool = False) -> Path:
    """``code_dir`` as an absolute path, or EmulatorError when it cannot be mounted."""
    absolute = Path(os.path.abspath(code_dir))
    if not absolute.exists():
        raise EmulatorError(f"{FLAG} {absolute}: no such directory")
    if not absolute.is_dir():
        raise EmulatorError(f"{FLAG} {absolute}: not a directory")
    if not allow_sensitive_paths:
        secret = exposes(absolute, sensitive_paths())
        if secret is not None:
            raise EmulatorError(
                f"{FLAG} {absolute} exposes the sensitive host path {secret} to the training "
                f"container; choose another directory, or {OVERRIDE_HINT}"
            )
    return absolute


class CodeOptions(Protocol):
    """What ``mount_code`` reads of the job's options (run/options.py's RunOptions)."""

    @property
    def code_dir(self) -> Path | None: ...
    @property
    def base_dir(self) -> Path | None: ...
    @property
    def allow_sensitive_paths(self) -> bool: ...
    @property
    def notice(self) -> Callable[[str], None]: ...


def mount_code(spec: JobSpec, options: CodeOptions) -> tuple[JobSpec, list[Mount]]:
    """The spec the containers see with ``options.code_dir`` (relative: to ``base_dir``,
    default the working directory) at /opt/ml/code, and the read-only mount that puts it
    there; without a code dir, the spec as it is and no mount."""
    if options.code_dir is None:
        return spec, []
    code_dir, base_dir = options.code_dir, options.base_dir
    directory = code_dir if code_dir.is_absolute() else (base_dir or Path.cwd()) / code_dir
    directory = check_code_dir(directory, allow_sensitive_paths=options.allow_sensitive_paths)
    _check_checkpoint_path(spec)
    hyperparameters = dict(spec.hyperparameters)
    environment = dict(spec.environment)
    for members, key, where in (
        (hyperparameters, SUBMIT_DIRECTORY, "hyperparameter"),
        (environment, SUBMIT_DIRECTORY_ENV, "Environment variable"),
    ):
        if key in members and _decoded(members[key]) != CODE_DIR:
            options.notice(
                f"{where} {key} ({_decoded(members[key])}) points at {CODE_DIR} instead: "
                f"--code mounts {directory} there"
            )
            members[key] = _encoded_like(members[key], CODE_DIR)
    spec = dataclasses.replace(spec, hyperparameters=hyperparameters, environment=environment)
    return spec, [Mount(CODE_DIR, directory, read_only=True)]


def _check_checkpoint_path(spec: JobSpec) -> None:
    if spec.checkpoint is None:
        return
    local = PurePosixPath(spec.checkpoint.local_path)
    code = PurePosixPath(CODE_DIR)
    if local == code or code in local.parents or local in code.parents:
        raise RequestInvalid(
            [
                f"CheckpointConfig.LocalPath: {local} overlaps {CODE_DIR}, where {FLAG} "
                "mounts the code read-only; choose another LocalPath (default /opt/ml/checkpoints)"
            ]
        )


def _decoded(value: str) -> str:
    """A hyperparameter as the toolkit reads it: JSON when it parses as a string (the SDK
    JSON-encodes every value), else as written."""
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value


def _encoded_like(original: str, value: str) -> str:
    """``value`` JSON-encoded when ``original`` was (the SDK's form), else plain."""
    return json.dumps(value) if _decoded(original) != original else value
