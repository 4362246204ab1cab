"""Local locations in a request: plain relative paths resolve against a base directory.

The base is the request file's directory (or the working directory for flags and stdin), so a
request file that names ``data/train`` works from wherever it is run, like a compose file.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from emulator.request.spec import JobSpec


def is_remote(uri: str) -> bool:
    return uri.startswith(("s3://", "https://", "http://"))


def absolute_location(uri: str, base_dir: Path) -> str:
    """``uri`` unchanged if remote, a file:// URI or absolute; else made absolute."""
    if is_remote(uri) or uri.startswith("file://"):
        return uri
    path = Path(uri).expanduser()
    return os.path.abspath(path if path.is_absolute() else base_dir / path)


def resolve_local_paths(spec: JobSpec, base_dir: Path) -> JobSpec:
    channels = tuple(
        dataclasses.replace(
            channel,
            source=dataclasses.replace(
                channel.source, uri=absolute_location(channel.source.uri, base_dir)
            ),
        )
        for channel in spec.channels
    )
    checkpoint = spec.checkpoint
    if checkpoint is not None:
        checkpoint = dataclasses.replace(
            checkpoint, uri=absolute_location(checkpoint.uri, base_dir)
        )
    return dataclasses.replace(
        spec,
        channels=channels,
        output_path=absolute_location(spec.output_path, base_dir),
        checkpoint=checkpoint,
    )
