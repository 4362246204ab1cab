"""Channel data from S3 (or any S3-compatible store) through boto3: the reads.

Resolution is SageMaker's S3Prefix rule: the URI's key part is a STRING prefix of keys
(``s3://b/data/tra`` matches ``data/train/x.csv`` and ``data/trainer.csv``); each object lands at
``key[len(prefix):]`` with one leading '/' removed (a key equal to the prefix keeps its base
name); zero-byte "folder markers" ending in '/' are skipped; every name goes through
``safe_relative_path``.

Reads: ``open`` streams a GET body (resuming with a ranged GET after a dropped connection),
``read_range`` is one ranged GET, ``download`` runs s3transfer's TransferManager
(``transfer.download_objects``: sizes known from the listing, so no HEAD per object).
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from s3transfer.utils import S3_RETRYABLE_DOWNLOAD_ERRORS

from emulator.config import S3Settings
from emulator.errors import SourceError
from emulator.progress import NO_PROGRESS, Progress
from emulator.storage.base import Entry, Source, safe_relative_path
from emulator.storage.s3.client import s3_client
from emulator.storage.s3.errors import client_error_text, translated
from emulator.storage.s3.transfer import download_objects
from emulator.storage.s3.uris import is_folder_marker, parse_s3_uri, relative_name

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
# Body reads that fail mid-stream (reset, timeout) are resumed this many times.
STREAM_RESUMES = 5
HEAD_WORKERS = 16
OPEN_BUFFER = 1 * MiB


class S3Source(Source):
    """Objects under an S3 key prefix (``s3://bucket/prefix`` or an AWS https URL)."""

    def __init__(self, uri: str, settings: S3Settings | None = None) -> None:
        self.uri = uri
        self.location = parse_s3_uri(uri)
        self.settings = settings or S3Settings.from_environ()

    @property
    def bucket(self) -> str:
        return self.location.bucket

    def _client(self) -> S3Client:
        with self._errors():  # an unknown profile is found when the client is made
            return s3_client(self.settings)

    def _errors(
        self, uri: str | None = None, missing: type[Exception] = SourceError
    ) -> AbstractContextManager[None]:
        return translated(uri or self.uri, missing)

    def entries(self) -> list[Entry]:
        found = list_objects(self.uri, self.settings)
        if not found:
            raise SourceError(
                f"{self.uri}: no objects under this prefix (bucket {self.bucket!r}, key prefix "
                f"{self.location.key!r}); check the S3 URI and that the data was uploaded"
            )
        return found

    def stat_keys(self, keys: list[str], origin: str | None = None) -> list[Entry]:
        """Entries for ``prefix + key`` of each key (a ManifestFile), ``relative_path = key``.

        Raises SourceError naming the objects that do not exist, prefixed with ``origin``
        (the manifest's URI; default: this source's)."""
        prefix = self.location.key

        def stat(key: str) -> Entry | str:
            full = prefix + key
            try:
                with self._errors(self.location.uri(full), missing=FileNotFoundError):
                    head = self._client().head_object(Bucket=self.bucket, Key=full)
            except FileNotFoundError:
                return full
            return Entry(safe_relative_path(key), full, head["ContentLength"], head.get("ETag"))

        # Paths are checked before any request is made.
        for key in keys:
            safe_relative_path(key)
        with ThreadPoolExecutor(max_workers=HEAD_WORKERS) as pool:
            results = list(pool.map(stat, keys))
        missing = [r for r in results if isinstance(r, str)]
        if missing and not self._bucket_exists():
            raise SourceError(client_error_text(self.uri, "NoSuchBucket", ""))
        if missing:
            shown = ", ".join(self.location.uri(k) for k in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise SourceError(f"{origin or self.uri}: object not found: {shown}{more}")
        return sorted(r for r in results if isinstance(r, Entry))

    def _bucket_exists(self) -> bool:
        """False only when the server says the bucket is missing (a HEAD 404 has no code)."""
        try:
            with self._errors(missing=FileNotFoundError):
                self._client().head_bucket(Bucket=self.bucket)
        except FileNotFoundError:
            return False
        except SourceError:
            return True  # e.g. no s3:ListBucket permission: the objects themselves are missing
        return True

    def open(self, entry: Entry) -> BinaryIO:
        uri = self.location.uri(entry.location)
        raw = _ObjectReader(self._client(), self.bucket, entry.location, uri)
        return io.BufferedReader(raw, buffer_size=OPEN_BUFFER)

    def read_range(self, entry: Entry, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= entry.size:
            return b""
        last = min(offset + length, entry.size) - 1
        uri = self.location.uri(entry.location)
        extra: dict[str, Any] = {"IfMatch": entry.etag} if entry.etag else {}
        error: BaseException | None = None
        for _ in range(STREAM_RESUMES + 1):
            with self._errors(uri, missing=FileNotFoundError):
                response = self._client().get_object(
                    Bucket=self.bucket, Key=entry.location, Range=f"bytes={offset}-{last}", **extra
                )
            try:
                data: bytes = response["Body"].read()
                return data
            except S3_RETRYABLE_DOWNLOAD_ERRORS as exc:
                error = exc
        raise SourceError(f"{uri}: reading bytes {offset}-{last} failed: {error}") from error

    def download(self, entries: list[Entry], dest: Path, progress: Progress = NO_PROGRESS) -> None:
        client = self._client()
        download_objects(client, self.bucket, entries, dest, self.settings, progress, self.uri)


class _ObjectReader(io.RawIOBase):
    """A GET body as a raw stream that resumes with a ranged GET when the connection drops."""

    def __init__(self, client: S3Client, bucket: str, key: str, uri: str) -> None:
        super().__init__()
        self._client, self._bucket, self._key, self._uri = client, bucket, key, uri
        self._pos = 0
        self._size: int | None = None
        self._etag: str | None = None
        self._body: Any = None
        self._body = self._get()  # errors (missing object) surface at open time

    def readable(self) -> bool:
        return True

    def _get(self) -> Any:
        extra: dict[str, Any] = {}
        if self._pos:
            extra["Range"] = f"bytes={self._pos}-"
        if self._etag:
            extra["IfMatch"] = self._etag
        with translated(self._uri, missing=FileNotFoundError):
            response = self._client.get_object(Bucket=self._bucket, Key=self._key, **extra)
        if self._size is None:
            self._size = response["ContentLength"]
            self._etag = response.get("ETag")
        return response["Body"]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._size is not None and self._pos >= self._size:
            return 0
        error: BaseException | None = None
        for _ in range(STREAM_RESUMES + 1):
            if self._body is None:
                self._body = self._get()
            try:
                data: bytes = self._body.read(len(view))
            except S3_RETRYABLE_DOWNLOAD_ERRORS as exc:
                data, error = b"", exc
            if data:
                view[: len(data)] = data
                self._pos += len(data)
                return len(data)
            # A reset, a timeout, or EOF before the size: resume from here with a ranged GET.
            self._body.close()
            self._body = None
        raise SourceError(
            f"{self._uri}: the download stopped at byte {self._pos} of {self._size} and could "
            f"not be resumed ({error or 'connection closed early'})"
        ) from error

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
        super().close()


def open_s3_uri(uri: str, settings: S3Settings | None = None) -> BinaryIO:
    """A sequential stream of the single object ``uri`` names (FileNotFoundError if absent)."""
    location = parse_s3_uri(uri)
    with translated(uri):
        client = s3_client(settings)
    raw = _ObjectReader(client, location.bucket, location.key, uri)
    return io.BufferedReader(raw, buffer_size=OPEN_BUFFER)


def list_objects(uri: str, settings: S3Settings | None = None) -> list[Entry]:
    """Every object under the key prefix of ``uri``, sorted; none at all is not an error.

    Names follow ``relative_name`` (a key that would escape is refused); folder markers are
    skipped. A missing bucket, denied access or an unreachable endpoint raise SourceError."""
    location = parse_s3_uri(uri)
    found: list[Entry] = []
    with translated(uri):
        pages = s3_client(settings).get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=location.bucket, Prefix=location.key):
            for obj in page.get("Contents", []):
                key, size = obj["Key"], obj["Size"]
                if is_folder_marker(key, size):
                    continue
                found.append(Entry(relative_name(location.key, key), key, size, obj.get("ETag")))
    return sorted(found)
