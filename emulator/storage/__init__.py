"""Where bytes live. The URI's kind is decided once, in ``uris.uri_kind``.

Channel data (read-only), chosen by S3DataType and URI kind (see ``base.Source``):

    S3DataType             s3:// or https:// URI          file:// URI or path
    S3Prefix               s3.S3Source                    local.LocalSource
    ManifestFile           manifest.ManifestSource        (the manifest's prefix decides)
    AugmentedManifestFile  manifest.AugmentedManifestSource

Folders the emulator writes (checkpoints, job outputs; see ``base.Location``):
``location(uri, settings)`` gives an ``s3.S3Folder`` or a ``local_folder.LocalFolder``.

Implementations are imported lazily: local-only jobs never import boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, Protocol

from emulator.errors import SourceError
from emulator.storage.base import Entry, Location, Source, Upload, safe_relative_path
from emulator.storage.uris import check_supported, is_local_uri, is_s3_uri, uri_kind

if TYPE_CHECKING:
    from emulator.config import S3Settings

__all__ = [
    "Entry",
    "Location",
    "Source",
    "Upload",
    "is_local_uri",
    "is_s3_uri",
    "location",
    "open_source",
    "open_uri",
    "safe_relative_path",
    "uri_kind",
]


class DataSourceSpec(Protocol):
    """What storage needs of a channel's DataSource (``request.spec.DataSourceSpec`` is one)."""

    @property
    def data_type(self) -> str: ...

    @property
    def uri(self) -> str: ...


def open_source(data_source: DataSourceSpec, settings: S3Settings | None = None) -> Source:
    """The Source for a channel's DataSource. Nothing is read until ``entries()``.

    ``settings`` reach S3 (None: from the environment)."""
    uri = data_source.uri
    check_supported(uri)
    if data_source.data_type == "ManifestFile":
        from emulator.storage.manifest import ManifestSource

        return ManifestSource(uri, settings)
    if data_source.data_type == "AugmentedManifestFile":
        from emulator.storage.manifest import AugmentedManifestSource

        return AugmentedManifestSource(uri, settings)
    if is_s3_uri(uri):
        from emulator.storage.s3 import S3Source

        return S3Source(uri, settings)
    from emulator.storage.local import LocalSource

    return LocalSource(uri)


def open_uri(uri: str, settings: S3Settings | None = None) -> BinaryIO:
    """A sequential stream of one object named by a full URI (s3://, https://, file://, path).

    Used for AugmentedManifestFile ``-ref`` attributes and manifest files themselves."""
    check_supported(uri)
    if is_s3_uri(uri):
        from emulator.storage.s3 import open_s3_uri

        try:
            return open_s3_uri(uri, settings)
        except FileNotFoundError as exc:
            raise SourceError(f"{uri}: no such object; check the URI") from exc
    from emulator.storage.local import local_path

    try:
        return open(local_path(uri), "rb")
    except OSError as exc:
        raise SourceError(f"{uri}: cannot open ({exc.strerror})") from exc


def location(uri: str, settings: S3Settings | None = None) -> Location:
    """The folder ``uri`` names, S3 or local (``settings`` reach S3; None: the environment).
    Nothing is read or written until it is used."""
    check_supported(uri)
    if is_s3_uri(uri):
        from emulator.storage.s3 import S3Folder

        return S3Folder(uri, settings)
    from emulator.storage.local_folder import LocalFolder

    return LocalFolder(uri)
