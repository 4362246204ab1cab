"""The validated, frozen form of a CreateTrainingJob request.

Nothing below this module parses raw request dicts: ``parse_request`` (in ``validation.py``)
turns a request into a ``JobSpec`` or raises ``RequestInvalid`` listing every problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from emulator.config import DEFAULT_REGION

InputMode = Literal["File", "Pipe", "FastFile"]
DataType = Literal["S3Prefix", "ManifestFile", "AugmentedManifestFile"]
Distribution = Literal["FullyReplicated", "ShardedByS3Key"]

DEFAULT_ACCOUNT = "000000000000"
DEFAULT_MAX_RUNTIME_SECONDS = 86400
DEFAULT_CHECKPOINT_PATH = "/opt/ml/checkpoints"
DEFAULT_TENSORBOARD_PATH = "/opt/ml/output/tensorboard"
DEFAULT_DEBUG_PATH = "/opt/ml/output/tensors"
HOMOGENEOUS_GROUP = "homogeneousCluster"


@dataclass(frozen=True)
class MetricDefinition:
    name: str
    regex: str


@dataclass(frozen=True)
class DataSourceSpec:
    data_type: DataType
    uri: str  # s3://..., https://..., file://... or a plain local path
    distribution: Distribution = "FullyReplicated"
    attribute_names: tuple[str, ...] = ()
    instance_group_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    source: DataSourceSpec
    input_mode: InputMode  # the EFFECTIVE mode: channel InputMode, else the job's
    content_type: str | None = None
    compression: Literal["None", "Gzip"] = "None"
    record_wrapper: Literal["None", "RecordIO"] = "None"
    shuffle_seed: int | None = None


@dataclass(frozen=True)
class InstanceGroup:
    name: str
    instance_type: str
    count: int


@dataclass(frozen=True)
class Host:
    name: str  # algo-1 ... algo-N
    group: str
    instance_type: str


@dataclass(frozen=True)
class ResourceSpec:
    instance_type: str
    instance_count: int
    volume_size_gb: int = 30
    instance_groups: tuple[InstanceGroup, ...] = ()

    def groups(self) -> tuple[InstanceGroup, ...]:
        """Instance groups, the homogeneous cluster being one implicit group."""
        if self.instance_groups:
            return self.instance_groups
        return (InstanceGroup(HOMOGENEOUS_GROUP, self.instance_type, self.instance_count),)

    def hosts(self) -> list[Host]:
        """Hosts algo-1..algo-N, numbered across groups in request order."""
        hosts: list[Host] = []
        for group in self.groups():
            for _ in range(group.count):
                hosts.append(Host(f"algo-{len(hosts) + 1}", group.name, group.instance_type))
        return hosts


@dataclass(frozen=True)
class CheckpointSpec:
    uri: str
    local_path: str = DEFAULT_CHECKPOINT_PATH


@dataclass(frozen=True)
class OutputFolderSpec:
    """A folder SageMaker uploads while the job runs (TensorBoardOutputConfig,
    DebugHookConfig): the container's ``local_path`` goes to ``<uri>/<job>/<suffix>/``."""

    member: str  # the request member, e.g. "TensorBoardOutputConfig"
    uri: str  # its S3OutputPath (s3://, file:// or a local path)
    local_path: str
    suffix: str  # "tensorboard-output" | "debug-output"

    def destination(self, job: str) -> str:
        return f"{self.uri.rstrip('/')}/{job}/{self.suffix}"


@dataclass(frozen=True)
class JobSpec:
    name: str
    image: str
    input_mode: InputMode
    channels: tuple[ChannelSpec, ...]
    output_path: str
    resources: ResourceSpec
    entrypoint: tuple[str, ...] | None = None
    arguments: tuple[str, ...] | None = None
    metric_definitions: tuple[MetricDefinition, ...] = ()
    hyperparameters: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    output_compression: Literal["GZIP", "NONE"] = "GZIP"
    max_runtime_seconds: int = DEFAULT_MAX_RUNTIME_SECONDS
    checkpoint: CheckpointSpec | None = None
    output_folders: tuple[OutputFolderSpec, ...] = ()
    network_isolation: bool = False
    role_arn: str = ""
    # Extra /opt/ml/input/config/<file>.json written verbatim from the request, e.g.
    # {"debughookconfig.json": {...}, "profilerconfig.json": {...}}.
    extra_configs: dict[str, Any] = field(default_factory=dict)
    # The request as given (after validation), echoed back in Describe records.
    request: dict[str, Any] = field(default_factory=dict)

    def arn(self, region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT) -> str:
        return f"arn:aws:sagemaker:{region}:{account}:training-job/{self.name}"
