"""CLI flags folded into a CreateTrainingJob request: build one from scratch, or override a file.

The result is an ordinary request dict, validated like any other; flags never bypass the API's
rules. Defaults for a request built from flags alone are those of the SageMaker Python SDK where
it has one (job name ``<image>-<timestamp>``, one ml.m5.large host, File mode).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulator.errors import EmulatorError, RequestInvalid
from emulator.request.nesting import depth_problem, depth_problems
from emulator.request.paths import absolute_location

DEFAULT_ROLE_ARN = "arn:aws:iam::000000000000:role/SageMakerEmulator"
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
DEFAULT_VOLUME_GB = 30
DEFAULT_MAX_RUNTIME = 86400
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


@dataclass
class Overrides:
    """Every flag that can build or change a request; None/empty means "not given"."""

    image: str | None = None
    entrypoint: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    input_mode: str | None = None
    channels: list[tuple[str, str]] = field(default_factory=list)
    hyperparameters: list[tuple[str, str]] = field(default_factory=list)
    environment: list[tuple[str, str]] = field(default_factory=list)
    metrics: list[tuple[str, str]] = field(default_factory=list)
    output: str | None = None
    job_name: str | None = None
    max_runtime: int | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    managed_spot: bool = False  # EnableManagedSpotTraining: true (False: as the request says)
    max_wait: int | None = None
    max_retry_attempts: int | None = None

    def resolved_against(self, directory: Path) -> Overrides:
        """These flags with relative local paths (channels, output) made absolute against
        ``directory``: paths typed on the command line are relative to where it runs, not to
        the request file's directory."""

        def absolute(uri: str) -> str:
            # URIs (and what looks like one, for validation to judge) are left as given.
            if not uri.strip() or _SCHEME.match(uri):
                return uri
            return absolute_location(uri, directory)

        return dataclasses.replace(
            self,
            channels=[(name, absolute(uri)) for name, uri in self.channels],
            output=None if self.output is None else absolute(self.output),
        )


def load_request(path: str) -> tuple[dict[str, Any], Path]:
    """The request in ``path`` ('-' for stdin) and the directory its relative paths start at."""
    try:
        if path == "-":
            text, base = sys.stdin.read(), Path.cwd()
        else:
            file = Path(path)
            text, base = file.read_text(), file.absolute().parent
    except OSError as exc:
        raise EmulatorError(f"Cannot read the request file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise EmulatorError(f"The request file {path} is not UTF-8 text") from exc
    try:
        request = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestInvalid(
            [
                f"(request file {path}): not valid JSON: {exc.msg} "
                f"at line {exc.lineno}, column {exc.colno}"
            ]
        ) from exc
    except RecursionError as exc:  # json recurses once per level, about a thousand at most
        raise RequestInvalid([depth_problem(f"(request file {path})")]) from exc
    if not isinstance(request, dict):
        raise RequestInvalid(
            [f"(request file {path}): must be a JSON object (the CreateTrainingJob request)"]
        )
    return request, base


def split_pair(text: str, flag: str, separator: str = "=") -> tuple[str, str]:
    key, found, value = text.partition(separator)
    if not found or not key:
        raise EmulatorError(f"{flag} {text!r}: expected NAME{separator}VALUE")
    return key, value


def default_job_name(image: str | None) -> str:
    base = (image or "training").rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    base = re.sub(r"[^a-zA-Z0-9-]+", "-", base).strip("-")[:32] or "training"
    moment = datetime.now(UTC)
    return f"{base}-{moment:%Y-%m-%d-%H-%M-%S}-{moment.microsecond // 1000:03d}"


def build_request(
    base: dict[str, Any] | None, flags: Overrides, default_output: str
) -> dict[str, Any]:
    """``base`` (or a fresh request) with every given flag applied.

    A flag that sets a member inside an object (``--instance-type`` in ResourceConfig, ...)
    applies only where that object is missing or is one: a member of the wrong type is left
    as given, for validation to report with its path. A ``base`` nested too deep to copy is
    an invalid request, as validation would say."""
    too_deep = depth_problems(base) if base is not None else []
    if too_deep:
        raise RequestInvalid(too_deep)
    request = copy.deepcopy(base) if base is not None else _fresh(flags, default_output)
    spec = _member_object(request, "AlgorithmSpecification")
    if spec is not None:
        _apply_algorithm(spec, flags)
    _apply_channels(request, flags.channels)
    _merge_map(request, "HyperParameters", flags.hyperparameters)
    _merge_map(request, "Environment", flags.environment)
    if flags.job_name is not None:
        request["TrainingJobName"] = flags.job_name
    _set_in(request, "OutputDataConfig", "S3OutputPath", flags.output)
    _set_in(request, "StoppingCondition", "MaxRuntimeInSeconds", flags.max_runtime)
    _set_in(request, "ResourceConfig", "InstanceType", flags.instance_type)
    _set_in(request, "ResourceConfig", "InstanceCount", flags.instance_count)
    if flags.managed_spot:
        request["EnableManagedSpotTraining"] = True
    _set_in(request, "StoppingCondition", "MaxWaitTimeInSeconds", flags.max_wait)
    _set_in(request, "RetryStrategy", "MaximumRetryAttempts", flags.max_retry_attempts)
    return request


def _member_object(request: dict[str, Any], member: str) -> dict[str, Any] | None:
    """``request[member]``, created empty when missing; None when it is not an object."""
    value = request.setdefault(member, {})
    return value if isinstance(value, dict) else None


def _set_in(request: dict[str, Any], member: str, key: str, value: object) -> None:
    if value is None:
        return
    target = _member_object(request, member)
    if target is not None:
        target[key] = value


def _apply_algorithm(spec: dict[str, Any], flags: Overrides) -> None:
    if flags.image is not None:
        spec["TrainingImage"] = flags.image
        spec.pop("AlgorithmName", None)
    if flags.entrypoint:
        spec["ContainerEntrypoint"] = list(flags.entrypoint)
    if flags.arguments:
        spec["ContainerArguments"] = list(flags.arguments)
    if flags.input_mode is not None:
        spec["TrainingInputMode"] = flags.input_mode
    if flags.metrics:
        current = spec.get("MetricDefinitions")
        given = current if isinstance(current, list) else []
        definitions = {d.get("Name"): d for d in given if isinstance(d, dict)}
        for name, regex in flags.metrics:
            definitions[name] = {"Name": name, "Regex": regex}
        spec["MetricDefinitions"] = list(definitions.values())


def _fresh(flags: Overrides, default_output: str) -> dict[str, Any]:
    return {
        "TrainingJobName": default_job_name(flags.image),
        "RoleArn": DEFAULT_ROLE_ARN,
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": default_output},
        "ResourceConfig": {
            "InstanceType": DEFAULT_INSTANCE_TYPE,
            "InstanceCount": 1,
            "VolumeSizeInGB": DEFAULT_VOLUME_GB,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": DEFAULT_MAX_RUNTIME},
    }


def _apply_channels(request: dict[str, Any], channels: list[tuple[str, str]]) -> None:
    if not channels:
        return
    existing = request.get("InputDataConfig")
    config = [c for c in existing if isinstance(c, dict)] if isinstance(existing, list) else []
    for name, uri in channels:
        config = [c for c in config if c.get("ChannelName") != name]
        config.append(
            {
                "ChannelName": name,
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}},
            }
        )
    request["InputDataConfig"] = config


def _merge_map(request: dict[str, Any], member: str, pairs: list[tuple[str, str]]) -> None:
    if pairs:
        merged = _member_object(request, member)
        if merged is not None:  # else validation reports the wrong type
            merged.update(pairs)
