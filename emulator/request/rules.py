"""The rules a CreateTrainingJob request must follow that the botocore model cannot express:
cross-field rules, and what cannot run locally (see ``check_semantics`` for the exact choices).

They run after the walk on whatever parts are well typed, so one call reports every problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from emulator.request.messages import excerpt
from emulator.request.spec import DEFAULT_CHECKPOINT_PATH, DEFAULT_MAX_RUNTIME_SECONDS
from emulator.request.walk import Problems

__all__ = ["check_semantics"]

# They read the request through these tolerant accessors: a part of the wrong type was already
# reported by the walk and is simply skipped here.


def _obj(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_INPUT_MODES = ("File", "Pipe", "FastFile")
_DOCKER_REFERENCE = re.compile(
    # distribution/reference grammar: [domain[:port]/]path[:tag][@digest], path lowercase.
    r"(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


def check_semantics(request: dict[Any, Any], out: Problems) -> None:
    """Cross-field rules and what cannot run locally. The exact choices:

    - AlgorithmSpecification is required (the model makes it optional only for serverless jobs,
      which cannot run locally, nor can ServerlessJobConfig).
    - Exactly one of TrainingImage and AlgorithmName; AlgorithmName alone is refused (algorithm
      resources run images only SageMaker can pull): give the algorithm's TrainingImage.
      TrainingImage must be a Docker image reference (``[registry/]repository[:tag][@digest]``,
      registry optional locally).
    - MetricDefinitions[].Regex must compile as a Python regex (the metrics engine uses one).
    - Channel names are unique, and neither ``.`` nor ``..``: the model's pattern takes them,
      but a channel's directory /opt/ml/input/data/<channel> would then be the data directory
      itself or its parent. Each DataSource has exactly one source; FileSystemDataSource
      (EFS/FSx) and DatasetSource cannot run locally; S3DataType Converse is refused.
    - With the EFFECTIVE mode (channel InputMode, else TrainingInputMode): AugmentedManifestFile
      is streamed in Pipe mode only (the emulator does not stage it as files); FastFile takes
      S3Prefix only (no ManifestFile either); File and FastFile refuse
      CompressionType Gzip and RecordWrapperType RecordIO (Pipe-mode features). ShuffleConfig
      is accepted with every mode (in File mode it orders the ShardedByS3Key split).
    - A Pipe channel ``c`` owns the names ``c_0``, ``c_1``, ... (its FIFOs in
      /opt/ml/input/data): no channel of any mode may bear one of them.
    - ResourceConfig is required; InstanceGroups (non-empty) excludes InstanceType and
      InstanceCount, otherwise both are required; every InstanceCount >= 1; group names are
      unique; channel InstanceGroupNames must name groups of ResourceConfig.InstanceGroups.
    - StoppingCondition: MaxWaitTimeInSeconds >= MaxRuntimeInSeconds (default 86400), and, as
      the real API says, only with EnableManagedSpotTraining true.
    - CheckpointConfig, TensorBoardOutputConfig and DebugHookConfig LocalPath, when given, is
      an absolute container path.
    """
    for rule in _SEMANTIC_RULES:
        rule(request, out)


def _check_algorithm(request: dict[Any, Any], out: Problems) -> None:
    if "AlgorithmSpecification" not in request:
        out.append(
            "AlgorithmSpecification: missing; a local training job needs "
            '{"TrainingImage": "<image>", "TrainingInputMode": "File"}'
        )
        return
    if not isinstance(request["AlgorithmSpecification"], dict):
        return  # the walk reported the type
    algo = request["AlgorithmSpecification"]
    has_image, has_name = "TrainingImage" in algo, "AlgorithmName" in algo
    path = "AlgorithmSpecification"
    if has_image and has_name:
        out.append(
            f"{path}: give either TrainingImage or AlgorithmName, not both; "
            "keep TrainingImage to run locally"
        )
    elif has_name:
        out.append(
            f"{path}.AlgorithmName: algorithm resources cannot run locally (their images live "
            "in SageMaker's registry); give the algorithm's image as TrainingImage instead "
            "(DescribeAlgorithm shows it under TrainingSpecification.TrainingImage)"
        )
    elif not has_image:
        out.append(f"{path}.TrainingImage: missing; give the Docker image to run")
    image = _text(algo.get("TrainingImage"))
    if image is not None and len(image) <= 255 and not _DOCKER_REFERENCE.fullmatch(image):
        out.append(
            f"{path}.TrainingImage: not a Docker image reference (got {excerpt(image)}); "
            "give [registry/]repository[:tag] or repository@sha256:<digest>, "
            "repository in lowercase"
        )
    for index, definition in enumerate(_items(algo.get("MetricDefinitions"))[:40]):
        regex = _text(_obj(definition).get("Regex"))
        if regex and len(regex) <= 500:  # longer ones broke the model's max already
            _check_python_regex(regex, f"{path}.MetricDefinitions[{index}].Regex", out)


def _check_python_regex(regex: str, path: str, out: Problems) -> None:
    try:
        re.compile(regex)
    except (re.error, RecursionError, OverflowError) as exc:
        out.append(f"{path}: not a valid regular expression ({exc}); fix the expression")


def _group_names(request: dict[Any, Any]) -> list[str] | None:
    """Names of ResourceConfig.InstanceGroups, or None when there are no groups."""
    groups = _items(_obj(request.get("ResourceConfig")).get("InstanceGroups"))
    names = [_text(_obj(group).get("InstanceGroupName")) for group in groups]
    return [name for name in names if name is not None] if groups else None


def _effective_mode(channel: dict[Any, Any], request: dict[Any, Any]) -> str | None:
    """The channel's InputMode, else the job's TrainingInputMode; None if that is invalid."""
    if "InputMode" in channel:
        mode = channel["InputMode"]
    else:
        mode = _obj(request.get("AlgorithmSpecification")).get("TrainingInputMode")
    return mode if isinstance(mode, str) and mode in _INPUT_MODES else None


# Names the ChannelName pattern allows that stand for the data directory or its parent.
_DATA_DIRECTORY_NAMES = {
    ".": "the data directory itself (/opt/ml/input/data)",
    "..": "the data directory's parent (/opt/ml/input)",
}


def _check_channels(request: dict[Any, Any], out: Problems) -> None:
    seen: dict[str, int] = {}
    for index, channel in enumerate(_items(request.get("InputDataConfig"))[:20]):
        if not isinstance(channel, dict):
            continue
        path = f"InputDataConfig[{index}]"
        name = _text(channel.get("ChannelName"))
        if name is not None and name in seen:
            out.append(
                f"{path}.ChannelName: duplicate channel name {excerpt(name)} (also "
                f"InputDataConfig[{seen[name]}]); channel names must be unique within the job"
            )
        elif name is not None:
            seen[name] = index
        if name is not None and name in _DATA_DIRECTORY_NAMES:
            out.append(
                f"{path}.ChannelName: {excerpt(name)} cannot name a channel: its directory "
                f"/opt/ml/input/data/{name} would be {_DATA_DIRECTORY_NAMES[name]}; use another "
                'name, such as "train"'
            )
        _check_data_source(channel, request, path, out)
        _check_channel_mode(channel, request, path, out)
    _check_fifo_names(request, out)


def _check_fifo_names(request: dict[Any, Any], out: Problems) -> None:
    """A Pipe channel ``c`` creates the FIFOs ``c_0``, ``c_1``, ... in /opt/ml/input/data:
    no other channel (of any mode) may be named like one of them."""
    channels = [
        (index, channel)
        for index, channel in enumerate(_items(request.get("InputDataConfig"))[:20])
        if isinstance(channel, dict) and _text(channel.get("ChannelName")) is not None
    ]
    pipes = {
        channel["ChannelName"]
        for _, channel in channels
        if _effective_mode(channel, request) == "Pipe"
    }
    for index, channel in channels:
        name: str = channel["ChannelName"]
        match = re.fullmatch(r"(.+)_(?:0|[1-9][0-9]*)", name)
        if match is None or match.group(1) not in pipes:
            continue
        pipe = match.group(1)
        out.append(
            f"InputDataConfig[{index}].ChannelName: channel {excerpt(name)} has the name of a "
            f"FIFO of the Pipe channel {excerpt(pipe)} ({pipe}_0, {pipe}_1, ... in "
            "/opt/ml/input/data); rename one of them"
        )


def _check_data_source(
    channel: dict[Any, Any], request: dict[Any, Any], path: str, out: Problems
) -> None:
    source = channel.get("DataSource")
    if not isinstance(source, dict):
        return
    path = f"{path}.DataSource"
    given = [
        key for key in ("S3DataSource", "FileSystemDataSource", "DatasetSource") if key in source
    ]
    if not given:
        out.append(
            f"{path}: needs S3DataSource; give "
            '{"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://... or a local path"}}'
        )
    elif len(given) > 1:
        out.append(f"{path}: give exactly one of {', '.join(given)}")
    if "FileSystemDataSource" in source:
        out.append(
            f"{path}.FileSystemDataSource: EFS and FSx for Lustre file systems cannot be "
            "mounted locally; copy the data to a local directory or S3 and use S3DataSource "
            "with its S3Uri (s3://..., file:///... or a local path)"
        )
    if "DatasetSource" in source:
        out.append(
            f"{path}.DatasetSource: SageMaker hub datasets cannot be read locally; use "
            "S3DataSource with the dataset's S3 location or a local copy"
        )
    s3 = _obj(source.get("S3DataSource"))
    if s3.get("S3DataType") == "Converse":
        out.append(
            f"{path}.S3DataSource.S3DataType: Converse datasets (serverless model customization) "
            "cannot run locally; use S3Prefix, ManifestFile or AugmentedManifestFile"
        )
    _check_group_names(s3, request, f"{path}.S3DataSource", out)


def _check_group_names(
    s3: dict[Any, Any], request: dict[Any, Any], path: str, out: Problems
) -> None:
    wanted = _items(s3.get("InstanceGroupNames"))
    if not wanted:
        return
    groups = _group_names(request)
    if groups is None:
        out.append(
            f"{path}.InstanceGroupNames: needs ResourceConfig.InstanceGroups; define the groups "
            "or remove InstanceGroupNames"
        )
        return
    for index, name in enumerate(wanted[:5]):
        if isinstance(name, str) and name not in groups:
            out.append(
                f"{path}.InstanceGroupNames[{index}]: no instance group named {excerpt(name)}; "
                f"ResourceConfig.InstanceGroups has: {', '.join(groups) or 'none'}"
            )


def _check_channel_mode(
    channel: dict[Any, Any], request: dict[Any, Any], path: str, out: Problems
) -> None:
    mode = _effective_mode(channel, request)
    if mode is None:
        return  # no valid mode to judge by: the walk reported why
    data_type = _obj(_obj(channel.get("DataSource")).get("S3DataSource")).get("S3DataType")
    if mode != "Pipe" and data_type == "AugmentedManifestFile":
        # channels/staging.py could only refuse it at run time: say so here, before the run.
        out.append(
            f"{path}.DataSource.S3DataSource.S3DataType: the emulator streams "
            f"AugmentedManifestFile in Pipe mode only (this channel's mode is {mode}); set the "
            "channel's InputMode to Pipe"
        )
    elif mode == "FastFile" and data_type == "ManifestFile":
        out.append(
            f"{path}.DataSource.S3DataSource.S3DataType: FastFile mode reads S3Prefix data only "
            f"(got {data_type}); use InputMode File or Pipe for manifests"
        )
    if mode == "Pipe":
        return
    pipe_only = {"CompressionType": "Gzip", "RecordWrapperType": "RecordIO"}
    for member, pipe_value in pipe_only.items():
        if channel.get(member) == pipe_value:
            out.append(
                f"{path}.{member}: {pipe_value} is a Pipe-mode feature (this channel's mode is "
                f"{mode}); set the channel's InputMode to Pipe or {member} to None"
            )


def _check_resources(request: dict[Any, Any], out: Problems) -> None:
    if "ResourceConfig" not in request:
        out.append(
            'ResourceConfig: missing; give {"InstanceType": "local", "InstanceCount": 1} '
            "(or an ml.* instance type, or InstanceGroups)"
        )
        return
    if not isinstance(request["ResourceConfig"], dict):
        return  # the walk reported the type
    config = request["ResourceConfig"]
    groups = _items(config.get("InstanceGroups"))
    path = "ResourceConfig"
    if groups:
        for member in ("InstanceType", "InstanceCount"):
            if member in config:
                out.append(
                    f"{path}.{member}: cannot be used with InstanceGroups; give it in each "
                    "group instead"
                )
        _check_groups(groups, out)
        return
    for member in ("InstanceType", "InstanceCount"):
        if member not in config:
            out.append(f"{path}.{member}: missing; give it, or give InstanceGroups")
    _check_instance_count(config.get("InstanceCount"), f"{path}.InstanceCount", out)


def _check_groups(groups: list[Any], out: Problems) -> None:
    seen: set[str] = set()
    for index, group in enumerate(groups[:5]):
        path = f"ResourceConfig.InstanceGroups[{index}]"
        name = _text(_obj(group).get("InstanceGroupName"))
        if name is not None and name in seen:
            out.append(f"{path}.InstanceGroupName: duplicate group name {excerpt(name)}")
        elif name is not None:
            seen.add(name)
        _check_instance_count(_obj(group).get("InstanceCount"), f"{path}.InstanceCount", out)


def _check_instance_count(value: object, path: str, out: Problems) -> None:
    count = _int(value)
    if count is not None and count == 0:  # the model allows 0; a job needs a host
        out.append(f"{path}: must be at least 1 (got 0)")


def _check_stopping(request: dict[Any, Any], out: Problems) -> None:
    stopping = _obj(request.get("StoppingCondition"))
    wait = _int(stopping.get("MaxWaitTimeInSeconds"))
    if wait is None:
        return
    path = "StoppingCondition.MaxWaitTimeInSeconds"
    if request.get("EnableManagedSpotTraining") is not True:
        out.append(
            f"{path}: only valid with managed spot training; set EnableManagedSpotTraining to "
            "true or remove MaxWaitTimeInSeconds"
        )
    runtime = stopping.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS)
    if _int(runtime) is not None and wait < runtime:
        default = "" if "MaxRuntimeInSeconds" in stopping else ", the default"
        out.append(
            f"{path}: must be at least MaxRuntimeInSeconds ({runtime}{default}) (got {wait}); "
            f"raise it to {runtime} or more"
        )


# Members with a LocalPath the emulator mounts and syncs, and an example of it.
_LOCAL_PATHS = {
    "CheckpointConfig": DEFAULT_CHECKPOINT_PATH,
    "TensorBoardOutputConfig": "/opt/ml/output/tensorboard",
    "DebugHookConfig": "/opt/ml/output/tensors",
}


def _check_checkpoint(request: dict[Any, Any], out: Problems) -> None:
    for member, example in _LOCAL_PATHS.items():
        local_path = _text(_obj(request.get(member)).get("LocalPath"))
        if local_path is not None and local_path and not local_path.startswith("/"):
            out.append(
                f"{member}.LocalPath: must be an absolute path inside the container (got "
                f"{excerpt(local_path)}); for example {example}"
            )


def _check_unsupported(request: dict[Any, Any], out: Problems) -> None:
    if "ServerlessJobConfig" in request:
        out.append(
            "ServerlessJobConfig: serverless model-customization jobs cannot run locally; "
            "remove it and give AlgorithmSpecification.TrainingImage"
        )


_SEMANTIC_RULES: tuple[Callable[[dict[Any, Any], Problems], None], ...] = (
    _check_algorithm,
    _check_channels,
    _check_resources,
    _check_stopping,
    _check_checkpoint,
    _check_unsupported,
)
