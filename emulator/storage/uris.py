"""Which URIs name S3, which the local file system, and which are refused: decided here only.

    s3://bucket/key, https://BUCKET.s3.REGION.amazonaws.com/KEY    S3 (``emulator.storage.s3``)
    file:///abs/path, a plain path (absolute or relative)          the local file system
    anything else with '://' (http://, ftp://, S3://...)           refused

Request validation refuses the third kind before a job exists (with its own wording); the
storage layer refuses it too, for URIs that never went through validation (an augmented
manifest's ``-ref`` attributes, a ManifestFile's prefix, a JobSpec built in code).
"""

from __future__ import annotations

from typing import Literal

from emulator.errors import SourceError

UriKind = Literal["s3", "local", "unsupported"]

S3_SCHEMES = ("s3://", "https://")
LOCAL_SCHEME = "file://"
SUPPORTED = "give s3://bucket/prefix, file:///absolute/path or a local path"


def uri_kind(uri: str) -> UriKind:
    """The kind of location ``uri`` names (schemes are case-sensitive, as in the API's pattern)."""
    if uri.startswith(S3_SCHEMES):
        return "s3"
    if uri.startswith(LOCAL_SCHEME) or "://" not in uri:
        return "local"
    return "unsupported"


def is_s3_uri(uri: str) -> bool:
    return uri_kind(uri) == "s3"


def is_local_uri(uri: str) -> bool:
    return uri_kind(uri) == "local"


def check_supported(uri: str) -> None:
    """Raise SourceError for a URI that is neither S3 nor local."""
    if uri_kind(uri) == "unsupported":
        raise SourceError(f"{uri}: unsupported URI scheme; {SUPPORTED}")
