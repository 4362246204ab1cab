"""S3 URIs: ``s3://bucket/key`` and AWS https URLs (virtual-hosted or path style), and where
a listed key lands in a channel (SageMaker's S3Prefix rule)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from emulator.errors import SourceError
from emulator.storage.base import safe_relative_path

_VIRTUAL_HOST = re.compile(
    r"^(?P<bucket>.+)\.s3(?:[.-](?:dualstack\.)?[a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?$"
)
_PATH_HOST = re.compile(r"^s3(?:[.-](?:dualstack\.)?[a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True)
class S3Address:
    bucket: str
    key: str  # a key, or a key prefix; may be empty

    def uri(self, key: str | None = None) -> str:
        return f"s3://{self.bucket}/{self.key if key is None else key}"


def parse_s3_uri(uri: str) -> S3Address:
    """Bucket and key of ``s3://bucket/key`` or an AWS https URL (virtual-hosted or path style)."""
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
    elif uri.startswith("https://"):
        bucket, key = _parse_https(uri)
    else:
        raise SourceError(f"{uri}: not an S3 URI (expected s3://bucket/prefix)")
    if not bucket:
        raise SourceError(f"{uri}: the S3 URI names no bucket (expected s3://bucket/prefix)")
    return S3Address(bucket, key)


def _parse_https(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    host = (parsed.hostname or "").lower()
    path = unquote(parsed.path)
    if match := _VIRTUAL_HOST.match(host):
        return match["bucket"], path.removeprefix("/")
    if _PATH_HOST.match(host):
        bucket, _, key = path.removeprefix("/").partition("/")
        return bucket, key
    raise SourceError(
        f"{uri}: https URIs must name an S3 object (https://BUCKET.s3.REGION.amazonaws.com/KEY); "
        "for another S3-compatible server use s3://BUCKET/KEY with --s3-endpoint-url"
    )


def relative_name(prefix: str, key: str) -> str:
    """Where ``key`` lands in the channel when listed under ``prefix`` (SageMaker's rule)."""
    rel = key[len(prefix) :]
    rel = rel.removeprefix("/")
    if not rel:  # the prefix is the whole key: the object keeps its base name
        rel = key.rsplit("/", 1)[-1]
    return safe_relative_path(rel)


def is_folder_marker(key: str, size: int) -> bool:
    """A zero-byte key ending in '/': a console-made "folder", not an object."""
    return key.endswith("/") and size == 0
