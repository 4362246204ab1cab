"""Local locations in a request: plain relative paths resolve against a base directory.

The base is the request file's directory (or the working directory for flags and stdin), so a
request file that names ``data/train`` works from wherever it is run, like a compose file.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from emulator.request.spec import JobSpec
from emulator.storage.uris import LOCAL_SCHEME, is_local_uri


def absolute_location(uri: str, base_dir: Path) -> str:
    """``uri`` unchanged unless it is a plain local path (S3, file:// and refused URIs are
    left as given); a relative path is made absolute against ``base_dir``."""
    if not is_local_uri(uri) or uri.startswith(LOCAL_SCHEME):
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
    folders = tuple(
        dataclasses.replace(folder, uri=absolute_location(folder.uri, base_dir))
        for folder in spec.output_folders
    )
    return dataclasses.replace(
        spec,
        channels=channels,
        output_path=absolute_location(spec.output_path, base_dir),
        checkpoint=checkpoint,
        output_folders=folders,
    )
