"""The host-side /opt/ml tree and its config files (CONTRACT.md section 2), written for one host
from a validated request, read back as the container would read them."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from emulator.plan.layout import HostLayout, host_order
from emulator.request.spec import Host, JobSpec
from emulator.request.validation import parse_request
from tests.fixtures.jobs import channel, probe_request


def spec_of(**members: Any) -> JobSpec:
    return parse_request(probe_request(Path("/tmp/emulator-test-output"), **members))


def written(tmp_path: Path, spec: JobSpec, host: str = "algo-1") -> dict[str, Any]:
    """Every config file the layout of ``host`` writes, parsed, by file name."""
    [current] = [h for h in spec.resources.hosts() if h.name == host]
    layout = HostLayout(tmp_path / host, current)
    layout.create(spec)
    return {path.name: json.loads(path.read_text()) for path in layout.config_dir.iterdir()}


def test_hyperparameters_are_a_flat_object_of_strings(tmp_path: Path) -> None:
    hyperparameters = {"epochs": "10", "lr": "0.1", "nested": '{"a": [1, 2]}', "empty": ""}
    files = written(tmp_path, spec_of(HyperParameters=hyperparameters))
    assert files["hyperparameters.json"] == hyperparameters


def test_no_hyperparameters_and_no_channels_give_empty_objects(tmp_path: Path) -> None:
    files = written(tmp_path, spec_of())
    assert files["hyperparameters.json"] == {}
    assert files["inputdataconfig.json"] == {}
    assert set(files) == {"hyperparameters.json", "inputdataconfig.json", "resourceconfig.json"}


@pytest.mark.parametrize(
    ("job_mode", "members", "expected"),
    [
        (
            "File",
            {},
            {
                "TrainingInputMode": "File",
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": "None",
            },
        ),
        # the EFFECTIVE mode: the channel's InputMode overrides the job's
        (
            "File",
            {"InputMode": "Pipe", "RecordWrapperType": "RecordIO"},
            {
                "TrainingInputMode": "Pipe",
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": "RecordIO",
            },
        ),
        (
            "Pipe",
            {},
            {
                "TrainingInputMode": "Pipe",
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": "None",
            },
        ),
        (
            "Pipe",
            {"InputMode": "FastFile"},
            {
                "TrainingInputMode": "FastFile",
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": "None",
            },
        ),
        # ContentType only when the request gives one
        (
            "File",
            {"ContentType": "text/csv"},
            {
                "ContentType": "text/csv",
                "TrainingInputMode": "File",
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": "None",
            },
        ),
    ],
    ids=["job-mode", "channel-overrides-job", "pipe-job", "fastfile-channel", "content-type"],
)
def test_inputdataconfig_gives_each_channel_its_effective_mode(
    tmp_path: Path, job_mode: str, members: dict[str, Any], expected: dict[str, str]
) -> None:
    spec = spec_of(
        AlgorithmSpecification={"TrainingImage": "probe:latest", "TrainingInputMode": job_mode},
        InputDataConfig=[channel("train", "/data/train", **members)],
    )
    assert written(tmp_path, spec)["inputdataconfig.json"] == {"train": expected}


def test_inputdataconfig_names_every_channel_with_its_distribution(tmp_path: Path) -> None:
    sharded = channel("train", "/data/train")
    sharded["DataSource"]["S3DataSource"]["S3DataDistributionType"] = "ShardedByS3Key"
    spec = spec_of(InputDataConfig=[sharded, channel("validation", "/data/validation")])
    config = written(tmp_path, spec)["inputdataconfig.json"]
    assert list(config) == ["train", "validation"]
    assert config["train"]["S3DistributionType"] == "ShardedByS3Key"
    assert config["validation"]["S3DistributionType"] == "FullyReplicated"


def test_resourceconfig_of_a_homogeneous_cluster(tmp_path: Path) -> None:
    spec = spec_of(
        ResourceConfig={"InstanceType": "ml.c5.xlarge", "InstanceCount": 3, "VolumeSizeInGB": 1}
    )
    assert written(tmp_path, spec, host="algo-2")["resourceconfig.json"] == {
        "current_host": "algo-2",
        "current_instance_type": "ml.c5.xlarge",
        "current_group_name": "homogeneousCluster",
        "hosts": ["algo-1", "algo-2", "algo-3"],
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": "ml.c5.xlarge",
                "hosts": ["algo-1", "algo-2", "algo-3"],
            }
        ],
        "network_interface_name": "eth0",
    }


def test_resourceconfig_of_instance_groups_lists_hosts_in_natural_order(tmp_path: Path) -> None:
    spec = spec_of(
        ResourceConfig={
            "InstanceGroups": [
                {"InstanceGroupName": "cpu", "InstanceType": "ml.c5.xlarge", "InstanceCount": 9},
                {"InstanceGroupName": "gpu", "InstanceType": "ml.p3.2xlarge", "InstanceCount": 2},
            ],
            "VolumeSizeInGB": 1,
        }
    )
    cpu_hosts = [f"algo-{n}" for n in range(1, 10)]
    assert written(tmp_path, spec, host="algo-10")["resourceconfig.json"] == {
        "current_host": "algo-10",
        "current_instance_type": "ml.p3.2xlarge",
        "current_group_name": "gpu",
        "hosts": [*cpu_hosts, "algo-10", "algo-11"],
        "instance_groups": [
            {"instance_group_name": "cpu", "instance_type": "ml.c5.xlarge", "hosts": cpu_hosts},
            {
                "instance_group_name": "gpu",
                "instance_type": "ml.p3.2xlarge",
                "hosts": ["algo-10", "algo-11"],
            },
        ],
        "network_interface_name": "eth0",
    }


@pytest.mark.parametrize(
    ("names", "ordered"),
    [
        (["algo-10", "algo-2", "algo-1"], ["algo-1", "algo-2", "algo-10"]),
        (["algo-100", "algo-11", "algo-9"], ["algo-9", "algo-11", "algo-100"]),
        ([], []),
    ],
)
def test_host_order_is_numeric(names: list[str], ordered: list[str]) -> None:
    assert host_order(names) == ordered


@pytest.mark.parametrize(
    ("checkpoint", "expected"),
    [
        (
            {"S3Uri": "s3://bucket/ckpt"},
            {"LocalPath": "/opt/ml/checkpoints", "S3Uri": "s3://bucket/ckpt"},
        ),
        (
            {"S3Uri": "s3://bucket/ckpt", "LocalPath": "/opt/ml/my-checkpoints"},
            {"LocalPath": "/opt/ml/my-checkpoints", "S3Uri": "s3://bucket/ckpt"},
        ),
    ],
    ids=["default-local-path", "own-local-path"],
)
def test_checkpointconfig_when_configured(
    tmp_path: Path, checkpoint: dict[str, str], expected: dict[str, str]
) -> None:
    spec = spec_of(CheckpointConfig=checkpoint)
    assert written(tmp_path, spec)["checkpointconfig.json"] == expected
    layout = HostLayout(tmp_path / "algo-1", spec.resources.hosts()[0])
    assert layout.mounts(spec)[expected["LocalPath"]] == layout.checkpoint_dir


@pytest.mark.parametrize(
    ("member", "content", "file"),
    [
        ("DebugHookConfig", {"S3OutputPath": "s3://bucket/debug"}, "debughookconfig.json"),
        (
            "ProfilerConfig",
            {"S3OutputPath": "s3://bucket/profiler", "ProfilingIntervalInMilliseconds": 500},
            "profilerconfig.json",
        ),
        (
            "TensorBoardOutputConfig",
            {"S3OutputPath": "s3://bucket/tb", "LocalPath": "/opt/ml/output/tensorboard"},
            "tensorboardoutputconfig.json",
        ),
    ],
)
def test_other_configs_are_written_from_the_request(
    tmp_path: Path, member: str, content: dict[str, Any], file: str
) -> None:
    files = written(tmp_path, spec_of(**{member: content}))
    assert files[file] == content


def test_writable_directories_are_writable_by_any_user(tmp_path: Path) -> None:
    spec = spec_of(CheckpointConfig={"S3Uri": "s3://bucket/ckpt"})
    layout = HostLayout(tmp_path / "algo-1", Host("algo-1", "homogeneousCluster", "ml.m5.large"))
    layout.create(spec)
    for directory in (
        layout.data_dir,
        layout.model_dir,
        layout.output_dir,
        layout.output_data_dir,
        layout.checkpoint_dir,
    ):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o777, directory
    assert not layout.failure_file.exists()


def test_no_checkpoint_directory_without_checkpoint_config(tmp_path: Path) -> None:
    spec = spec_of()
    layout = HostLayout(tmp_path / "algo-1", spec.resources.hosts()[0])
    layout.create(spec)
    assert not layout.checkpoint_dir.exists()
    assert "/opt/ml/checkpoints" not in layout.mounts(spec)


def test_only_subdirectories_of_opt_ml_are_mounted(tmp_path: Path) -> None:
    # Images may ship /opt/ml/code: a mount over all of /opt/ml would hide it.
    spec = spec_of()
    layout = HostLayout(tmp_path / "algo-1", spec.resources.hosts()[0])
    assert layout.mounts(spec) == {
        "/opt/ml/input/config": layout.config_dir,
        "/opt/ml/input/data": layout.data_dir,
        "/opt/ml/model": layout.model_dir,
        "/opt/ml/output": layout.output_dir,
    }


def test_creating_the_layout_twice_rewrites_the_config(tmp_path: Path) -> None:
    layout = HostLayout(tmp_path / "algo-1", spec_of().resources.hosts()[0])
    layout.create(spec_of(HyperParameters={"a": "1"}))
    layout.create(spec_of(HyperParameters={"b": "2"}))
    assert json.loads((layout.config_dir / "hyperparameters.json").read_text()) == {"b": "2"}


def test_output_folders_inside_the_tree_use_it_and_others_get_a_mount(tmp_path: Path) -> None:
    spec = parse_request(
        probe_request(
            tmp_path / "out",
            TensorBoardOutputConfig={"S3OutputPath": "s3://b/tb"},
            DebugHookConfig={"S3OutputPath": "s3://b/debug", "LocalPath": "/tmp/tensors"},
        )
    )
    layout = HostLayout(tmp_path / "algo-1", Host("algo-1", "g", "ml.m5.large"))
    layout.create(spec)
    tensorboard = layout.output_folder_dir("/opt/ml/output/tensorboard", 0)
    debug = layout.output_folder_dir("/tmp/tensors", 1)
    assert tensorboard == layout.output_dir / "tensorboard"
    assert debug == layout.root / "synced-1"
    for directory in (tensorboard, debug):
        assert directory.is_dir() and stat.S_IMODE(directory.stat().st_mode) == 0o777
    mounts = layout.mounts(spec)
    assert mounts["/tmp/tensors"] == debug
    assert "/opt/ml/output/tensorboard" not in mounts  # inside the mounted /opt/ml/output
