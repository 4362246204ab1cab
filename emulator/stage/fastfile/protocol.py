"""The FastFile parent <-> file system process protocol, both ends in one place.

The parent (``FastFileMount``) starts ``python -m emulator.stage.fastfile.server`` and:

1. writes one ``MountConfig`` as a JSON line on the child's stdin (``MountConfig.encode``;
   the child reads it with ``MountConfig.decode``), then keeps that pipe open as a lifeline:
   when it closes (the emulator exited or died) the child unmounts and exits;
2. reads one report line from the child's stdout (``parse_report``): ``ready`` once the kernel
   has mounted the file system (``Ready``), or ``error <json>`` when it could not start
   (``StartError``, which carries the kind of EmulatorError to raise). The child writes them
   with ``encode_report``. The child's stderr is its log.

While mounted, the block cache counters are readable as JSON in the extended attribute
``STATS_XATTR`` of the mount's root (``decode_stats``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from emulator.config import S3Settings
from emulator.errors import EmulatorError, EnvironmentProblem, SourceError
from emulator.request.spec import DataSourceSpec
from emulator.storage.base import Entry

__all__ = [
    "STATS_XATTR",
    "MountConfig",
    "Ready",
    "Report",
    "StartError",
    "decode_stats",
    "encode_report",
    "encode_stats",
    "parse_report",
]

STATS_XATTR = "user.emulator.fastfile.stats"
_READY = b"ready"
_ERROR = b"error "


@dataclass(frozen=True)
class MountConfig:
    """What the child needs to serve one channel: the Source is rebuilt in the child with
    ``open_source(data_source, s3_settings)`` (None: S3 settings from the environment, which
    the child inherits, as it does credentials a profile does not give)."""

    data_source: DataSourceSpec
    s3_settings: S3Settings | None
    entries: tuple[Entry, ...]
    mountpoint: Path
    label: str
    cache_bytes: int
    block_size: int
    readahead_blocks: int
    fetch_workers: int

    def encode(self) -> bytes:
        """One JSON line (newline included)."""
        message = {
            "data_source": asdict(self.data_source),
            "s3_settings": None if self.s3_settings is None else asdict(self.s3_settings),
            "entries": [[e.relative_path, e.location, e.size, e.etag] for e in self.entries],
            "mountpoint": str(self.mountpoint),
            "label": self.label,
            "cache_bytes": self.cache_bytes,
            "block_size": self.block_size,
            "readahead_blocks": self.readahead_blocks,
            "fetch_workers": self.fetch_workers,
        }
        return json.dumps(message).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> MountConfig:
        """The config of an ``encode``d line; ValueError/KeyError/TypeError if malformed."""
        message: dict[str, Any] = json.loads(line)
        spec = message["data_source"]
        settings = message.get("s3_settings")
        return cls(
            data_source=DataSourceSpec(
                data_type=spec["data_type"],
                uri=spec["uri"],
                distribution=spec["distribution"],
                attribute_names=tuple(spec["attribute_names"]),
                instance_group_names=tuple(spec["instance_group_names"]),
            ),
            s3_settings=None if settings is None else S3Settings(**settings),
            entries=tuple(Entry(*fields) for fields in message["entries"]),
            mountpoint=Path(message["mountpoint"]),
            label=message["label"],
            cache_bytes=message["cache_bytes"],
            block_size=message["block_size"],
            readahead_blocks=message["readahead_blocks"],
            fetch_workers=message["fetch_workers"],
        )


@dataclass(frozen=True)
class Ready:
    """The kernel has mounted the file system; it serves requests."""


@dataclass(frozen=True)
class StartError:
    """The file system could not start: ``kind`` names the EmulatorError to raise."""

    kind: str  # "SourceError" or "EnvironmentProblem"
    message: str

    @classmethod
    def from_exception(cls, exc: EmulatorError) -> StartError:
        kind = "SourceError" if isinstance(exc, SourceError) else "EnvironmentProblem"
        return cls(kind, str(exc))

    def exception(self) -> EmulatorError:
        """The error to raise in the parent (EnvironmentProblem unless a SourceError)."""
        kind = SourceError if self.kind == "SourceError" else EnvironmentProblem
        return kind(self.message or "the FastFile file system failed to start")


Report = Ready | StartError


def encode_report(report: Report) -> bytes:
    """The line the child writes on its stdout (newline included)."""
    if isinstance(report, Ready):
        return _READY + b"\n"
    return _ERROR + json.dumps({"kind": report.kind, "message": report.message}).encode() + b"\n"


def parse_report(line: bytes) -> Report | None:
    """The child's report, or None for anything else (an empty line: it died silently)."""
    if line == _READY + b"\n":
        return Ready()
    if line.startswith(_ERROR):
        payload: dict[str, str] = json.loads(line[len(_ERROR) :])
        return StartError(payload.get("kind", ""), payload.get("message", ""))
    return None


def encode_stats(counters: dict[str, int]) -> bytes:
    """The value of ``STATS_XATTR`` (the child's block cache counters)."""
    return json.dumps(counters).encode()


def decode_stats(value: bytes) -> dict[str, int]:
    return dict(json.loads(value))
