"""Where channel bytes come from, chosen by URI scheme (see ``base.Source``)."""

from __future__ import annotations

from typing import BinaryIO

from emulator.errors import SourceError
from emulator.sources.base import Entry, Source, safe_relative_path
from emulator.spec import DataSourceSpec

__all__ = ["Entry", "Source", "is_s3_uri", "open_source", "open_uri", "safe_relative_path"]


def is_s3_uri(uri: str) -> bool:
    return uri.startswith(("s3://", "https://"))


def open_source(data_source: DataSourceSpec) -> Source:
    """The Source for a channel's DataSource (S3Prefix, or ManifestFile resolved)."""
    if data_source.data_type != "S3Prefix":
        raise SourceError(
            f"{data_source.uri}: S3DataType {data_source.data_type} is not supported yet"
        )
    if is_s3_uri(data_source.uri):
        raise SourceError(f"{data_source.uri}: S3 sources are not supported yet")
    from emulator.sources.local import LocalSource

    return LocalSource(data_source.uri)


def open_uri(uri: str) -> BinaryIO:
    """A sequential stream of one object named by a full URI (s3://, https://, file://, path).

    Used for AugmentedManifestFile ``-ref`` attributes and manifest files themselves."""
    if is_s3_uri(uri):
        raise SourceError(f"{uri}: S3 sources are not supported yet")
    from emulator.sources.local import local_path

    try:
        return open(local_path(uri), "rb")
    except OSError as exc:
        raise SourceError(f"{uri}: cannot open ({exc.strerror})") from exc
