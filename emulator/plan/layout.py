"""The host-side /opt/ml tree of one host and its config files (CONTRACT.md section 2).

    <root>/input/config/   -> /opt/ml/input/config   hyperparameters.json, inputdataconfig.json,
                                                     resourceconfig.json, checkpointconfig.json, ...
    <root>/input/data/     -> /opt/ml/input/data     File channels (dirs), Pipe FIFOs
    <root>/model/          -> /opt/ml/model
    <root>/output/         -> /opt/ml/output         data/, failure
    <root>/checkpoints/    -> CheckpointConfig.LocalPath (only when configured)
    <root>/synced-N/       -> the LocalPath of TensorBoardOutputConfig / DebugHookConfig, when
                              it lies outside /opt/ml/output and /opt/ml/model (inside them the
                              folder is that tree's own subdirectory: output/tensorboard/ ...)
    <root>/pipe_state/     -> /opt/ml/pipe_state      (only with Pipe channels: TensorFlow's
                                                     PipeModeDataset keeps its state there)

FastFile channels are mounted separately (read-only) at /opt/ml/input/data/<channel>.
Each host's inputdataconfig.json lists only the channels that reach it (InstanceGroupNames).
The config directory is mounted read-write (the contract does not say read-only; it is this
host's own copy and nothing reads it back).
Only these subdirectories are mounted, never all of /opt/ml: images may ship /opt/ml/code.
Writable directories are world-writable so that an image with a non-root USER can write them.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.plan.channels import host_order
from emulator.request.spec import ChannelSpec, Host, JobSpec

CONTAINER_ML = "/opt/ml"
NETWORK_INTERFACE = "eth0"
WRITABLE = 0o777
WRITABLE_FILE = 0o666


@dataclass(frozen=True)
class HostLayout:
    root: Path
    host: Host

    @property
    def config_dir(self) -> Path:
        return self.root / "input" / "config"

    @property
    def data_dir(self) -> Path:
        return self.root / "input" / "data"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def pipe_state_dir(self) -> Path:
        return self.root / "pipe_state"

    def channel_dir(self, channel: str) -> Path:
        return self.data_dir / channel

    def output_folder_dir(self, local_path: str, index: int) -> Path:
        """Where the host sees what the container writes at ``local_path`` (the ``index``-th
        of ``JobSpec.output_folders``): a subdirectory of the mounted output or model tree,
        else a directory of its own, mounted at ``local_path``."""
        path = posixpath.normpath(local_path)
        for tree in ("output", "model"):
            top = f"{CONTAINER_ML}/{tree}"
            if path == top or path.startswith(top + "/"):
                return self.root / tree / posixpath.relpath(path, top)
        return self.root / f"synced-{index}"

    def create(self, spec: JobSpec) -> None:
        """Make the directories and write every config file for this host."""
        for directory in (self.config_dir, self.data_dir, self.model_dir, self.output_data_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for directory in (self.data_dir, self.model_dir, self.output_dir, self.output_data_dir):
            os.chmod(directory, WRITABLE)
        if spec.checkpoint is not None:
            self.checkpoint_dir.mkdir(exist_ok=True)
            os.chmod(self.checkpoint_dir, WRITABLE)
        if uses_pipe(spec):
            self.pipe_state_dir.mkdir(exist_ok=True)
            os.chmod(self.pipe_state_dir, WRITABLE)
        for index, folder in enumerate(spec.output_folders):
            directory = self.output_folder_dir(folder.local_path, index)
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, WRITABLE)
        for name, content in config_files(spec, self.host).items():
            (self.config_dir / name).write_text(json.dumps(content, indent=2) + "\n")

    def mounts(self, spec: JobSpec) -> dict[str, Path]:
        """Container path -> host path of every bind mount of this tree (read-write)."""
        mounts = {
            f"{CONTAINER_ML}/input/config": self.config_dir,
            f"{CONTAINER_ML}/input/data": self.data_dir,
            f"{CONTAINER_ML}/model": self.model_dir,
            f"{CONTAINER_ML}/output": self.output_dir,
        }
        if spec.checkpoint is not None:
            mounts[spec.checkpoint.local_path] = self.checkpoint_dir
        if uses_pipe(spec):
            mounts[f"{CONTAINER_ML}/pipe_state"] = self.pipe_state_dir
        for index, folder in enumerate(spec.output_folders):
            directory = self.output_folder_dir(folder.local_path, index)
            if directory == self.root / f"synced-{index}":  # not inside a mounted tree
                mounts[folder.local_path] = directory
        return mounts


def uses_pipe(spec: JobSpec) -> bool:
    return any(channel.input_mode == "Pipe" for channel in spec.channels)


def config_files(spec: JobSpec, host: Host) -> dict[str, Any]:
    """File name -> JSON content of /opt/ml/input/config for ``host``."""
    files: dict[str, Any] = {
        "hyperparameters.json": dict(spec.hyperparameters),
        "inputdataconfig.json": {
            c.name: channel_config(c) for c in spec.channels if channel_reaches(c, host)
        },
        "resourceconfig.json": resource_config(spec, host),
    }
    if spec.checkpoint is not None:
        files["checkpointconfig.json"] = {
            "LocalPath": spec.checkpoint.local_path,
            "S3Uri": spec.checkpoint.uri,
        }
    files.update(spec.extra_configs)
    return files


def channel_reaches(channel: ChannelSpec, host: Host) -> bool:
    """Whether ``host`` gets ``channel``: every host, unless the channel's InstanceGroupNames
    name groups, then only the hosts of those groups (its data and its inputdataconfig.json
    entry alike)."""
    groups = channel.source.instance_group_names
    return not groups or host.group in groups


def channel_config(channel: ChannelSpec) -> dict[str, str]:
    """One channel of inputdataconfig.json, with its EFFECTIVE input mode."""
    config = {}
    if channel.content_type is not None:
        config["ContentType"] = channel.content_type
    config["TrainingInputMode"] = channel.input_mode
    config["S3DistributionType"] = channel.source.distribution
    config["RecordWrapperType"] = channel.record_wrapper
    return config


def resource_config(spec: JobSpec, host: Host) -> dict[str, Any]:
    hosts = spec.resources.hosts()
    groups = [
        {
            "instance_group_name": group.name,
            "instance_type": group.instance_type,
            "hosts": host_order([h.name for h in hosts if h.group == group.name]),
        }
        for group in spec.resources.groups()
    ]
    return {
        "current_host": host.name,
        "current_instance_type": host.instance_type,
        "current_group_name": host.group,
        "hosts": host_order([h.name for h in hosts]),
        "instance_groups": groups,
        "network_interface_name": NETWORK_INTERFACE,
    }


def make_writable(root: Path) -> None:
    """Make a tree the container may change writable whatever its USER (our copies only: File
    channels, restored checkpoints; never the user's files). Links are left alone."""
    pending = [str(root)]
    os.chmod(root, WRITABLE)
    while pending:
        # scandir's entries know their type: no stat per file to skip the links.
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    continue
                if entry.is_dir():
                    os.chmod(entry.path, WRITABLE)
                    pending.append(entry.path)
                else:
                    os.chmod(entry.path, WRITABLE_FILE)
