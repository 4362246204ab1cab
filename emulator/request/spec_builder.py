"""Turn a valid CreateTrainingJob request into a frozen ``JobSpec``.

Only ``emulator.request.validation.parse_request`` calls this, after validation found no
problem: the request is trusted here (required members present, types right), and defaults the
model leaves to the service are filled in.
"""

from __future__ import annotations

import copy
from typing import Any

from emulator.request.spec import (
    DEFAULT_CHECKPOINT_PATH,
    DEFAULT_DEBUG_PATH,
    DEFAULT_MAX_RUNTIME_SECONDS,
    DEFAULT_TENSORBOARD_PATH,
    ChannelSpec,
    CheckpointSpec,
    DataSourceSpec,
    InstanceGroup,
    JobSpec,
    MetricDefinition,
    OutputFolderSpec,
    ResourceSpec,
)

__all__ = ["build_job_spec"]

# Members written as JSON files into /opt/ml/input/config, by the file's name.
_EXTRA_CONFIG_FILES = {
    "DebugHookConfig": "debughookconfig.json",
    "ProfilerConfig": "profilerconfig.json",
    "TensorBoardOutputConfig": "tensorboardoutputconfig.json",
}


def build_job_spec(request: dict[str, Any]) -> JobSpec:
    """The ``JobSpec`` of a request that ``validate_request`` accepted.

    The spec keeps ``request`` itself as ``JobSpec.request``: pass a copy the caller will not
    change.
    """
    algo: dict[str, Any] = request["AlgorithmSpecification"]
    job_mode = algo["TrainingInputMode"]
    output: dict[str, Any] = request["OutputDataConfig"]
    stopping: dict[str, Any] = request.get("StoppingCondition", {})
    entrypoint, arguments = algo.get("ContainerEntrypoint"), algo.get("ContainerArguments")
    return JobSpec(
        name=request["TrainingJobName"],
        image=algo["TrainingImage"],
        input_mode=job_mode,
        channels=tuple(_channel(c, job_mode) for c in request.get("InputDataConfig", ())),
        output_path=output["S3OutputPath"],
        resources=_resources(request["ResourceConfig"]),
        entrypoint=None if entrypoint is None else tuple(entrypoint),
        arguments=None if arguments is None else tuple(arguments),
        metric_definitions=tuple(
            MetricDefinition(d["Name"], d["Regex"]) for d in algo.get("MetricDefinitions", ())
        ),
        hyperparameters=dict(request.get("HyperParameters", {})),
        environment=dict(request.get("Environment", {})),
        output_compression=output.get("CompressionType", "GZIP"),
        max_runtime_seconds=stopping.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS),
        checkpoint=_checkpoint(request.get("CheckpointConfig")),
        output_folders=_output_folders(request),
        network_isolation=request.get("EnableNetworkIsolation", False),
        role_arn=request["RoleArn"],
        extra_configs={
            file: copy.deepcopy(request[member])
            for member, file in _EXTRA_CONFIG_FILES.items()
            if member in request
        },
        request=request,
    )


def _channel(channel: dict[str, Any], job_mode: str) -> ChannelSpec:
    s3: dict[str, Any] = channel["DataSource"]["S3DataSource"]
    shuffle = channel.get("ShuffleConfig")
    return ChannelSpec(
        name=channel["ChannelName"],
        source=DataSourceSpec(
            data_type=s3["S3DataType"],
            uri=s3["S3Uri"],
            distribution=s3.get("S3DataDistributionType", "FullyReplicated"),
            attribute_names=tuple(s3.get("AttributeNames", ())),
            instance_group_names=tuple(s3.get("InstanceGroupNames", ())),
        ),
        input_mode=channel.get("InputMode", job_mode),
        content_type=channel.get("ContentType"),
        compression=channel.get("CompressionType", "None"),
        record_wrapper=channel.get("RecordWrapperType", "None"),
        shuffle_seed=None if shuffle is None else shuffle["Seed"],
    )


def _resources(config: dict[str, Any]) -> ResourceSpec:
    volume: int = config.get("VolumeSizeInGB", ResourceSpec.volume_size_gb)
    groups = tuple(
        InstanceGroup(g["InstanceGroupName"], g["InstanceType"], g["InstanceCount"])
        for g in config.get("InstanceGroups", ())
    )
    if groups:
        # Heterogeneous cluster: the first group's type and the total count stand for the job.
        total = sum(group.count for group in groups)
        return ResourceSpec(groups[0].instance_type, total, volume, groups)
    return ResourceSpec(config["InstanceType"], config["InstanceCount"], volume)


def _checkpoint(config: dict[str, Any] | None) -> CheckpointSpec | None:
    if config is None:
        return None
    return CheckpointSpec(config["S3Uri"], config.get("LocalPath", DEFAULT_CHECKPOINT_PATH))


# Folders SageMaker uploads while the job runs: member -> (default LocalPath, key suffix).
_OUTPUT_FOLDERS = {
    "TensorBoardOutputConfig": (DEFAULT_TENSORBOARD_PATH, "tensorboard-output"),
    "DebugHookConfig": (DEFAULT_DEBUG_PATH, "debug-output"),
}


def _output_folders(request: dict[str, Any]) -> tuple[OutputFolderSpec, ...]:
    folders = []
    for member, (default_path, suffix) in _OUTPUT_FOLDERS.items():
        config = request.get(member)
        if config is not None:
            local_path = config.get("LocalPath") or default_path
            folders.append(OutputFolderSpec(member, config["S3OutputPath"], local_path, suffix))
    return tuple(folders)
