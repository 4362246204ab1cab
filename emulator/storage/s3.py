"""Channel data from S3 (or any S3-compatible store) through boto3.

Resolution is SageMaker's S3Prefix rule: the URI's key part is a STRING prefix of keys
(``s3://b/data/tra`` matches ``data/train/x.csv`` and ``data/trainer.csv``); each object lands at
``key[len(prefix):]`` with one leading '/' removed (a key equal to the prefix keeps its base
name); zero-byte "folder markers" ending in '/' are skipped; every name goes through
``safe_relative_path``.

Reads: ``open`` streams a GET body (resuming with a ranged GET after a dropped connection),
``read_range`` is one ranged GET, ``download`` runs s3transfer's TransferManager (parallel
requests, ranged parts for big objects, bounded memory, sizes known from the listing so no
HEAD per object). Clients come from ``emulator.config.S3Settings`` (endpoint, profile, region,
retries); botocore errors become ``SourceError`` (or ``FileNotFoundError`` for a missing object)
in ``_translated``, the one boundary.

Writes (job outputs, checkpoints) and the other calls the emulator makes are here too, so that
boto3 stays in this module: ``check_bucket`` (preflight of a location the job writes),
``list_objects`` (a prefix's objects; empty is fine), ``upload_objects`` (TransferManager:
parallel, multipart above ``MULTIPART_THRESHOLD``), ``delete_objects`` (batched DeleteObjects)
and ``credentials_environment`` (the resolved credentials, for ``--pass-aws-credentials``).
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote, urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from s3transfer.exceptions import RetriesExceededError
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber
from s3transfer.utils import S3_RETRYABLE_DOWNLOAD_ERRORS

from emulator.config import S3Settings
from emulator.errors import SourceError
from emulator.progress import NO_PROGRESS, Progress
from emulator.storage.base import Entry, Source, safe_relative_path

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from s3transfer.futures import TransferFuture

MiB = 1024 * 1024
# Objects above the threshold are fetched as parallel ranged parts of the chunk size.
MULTIPART_THRESHOLD = 16 * MiB
MULTIPART_CHUNKSIZE = 16 * MiB
# s3transfer's write queue: at most MAX_IO_QUEUE chunks of IO_CHUNKSIZE wait in memory
# (32 MiB). 1 MiB chunks instead of the default 256 KiB: ~30% faster on big objects.
MAX_IO_QUEUE = 32
IO_CHUNKSIZE = 1 * MiB
# Transfer futures kept alive at once, so a million-object channel needs bounded memory.
DOWNLOAD_WINDOW = 1000
# Body reads that fail mid-stream (reset, timeout) are resumed this many times.
STREAM_RESUMES = 5
HEAD_WORKERS = 16
OPEN_BUFFER = 1 * MiB

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})


# -- URIs -----------------------------------------------------------------------------------

_VIRTUAL_HOST = re.compile(
    r"^(?P<bucket>.+)\.s3(?:[.-](?:dualstack\.)?[a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?$"
)
_PATH_HOST = re.compile(r"^s3(?:[.-](?:dualstack\.)?[a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str  # a key, or a key prefix; may be empty

    def uri(self, key: str | None = None) -> str:
        return f"s3://{self.bucket}/{self.key if key is None else key}"


def parse_s3_uri(uri: str) -> S3Location:
    """Bucket and key of ``s3://bucket/key`` or an AWS https URL (virtual-hosted or path style)."""
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
    elif uri.startswith("https://"):
        bucket, key = _parse_https(uri)
    else:
        raise SourceError(f"{uri}: not an S3 URI (expected s3://bucket/prefix)")
    if not bucket:
        raise SourceError(f"{uri}: the S3 URI names no bucket (expected s3://bucket/prefix)")
    return S3Location(bucket, key)


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


def _is_folder_marker(key: str, size: int) -> bool:
    return key.endswith("/") and size == 0


# -- clients --------------------------------------------------------------------------------

_clients: dict[tuple[Any, ...], S3Client] = {}
_clients_lock = threading.Lock()


def s3_client(settings: S3Settings | None = None) -> S3Client:
    """A client for ``settings`` (default: from the environment), shared within the process.

    The cache key includes every AWS_* variable, so changed credentials or endpoints in the
    environment give a fresh client; and the process id, so a forked child builds its own.
    """
    settings = settings or S3Settings.from_environ()
    aws_env = frozenset((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))
    cache_key = (settings, aws_env, os.getpid())
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            if len(_clients) > 16:
                _clients.clear()
            client = _clients[cache_key] = _new_client(settings)
    return client


def _new_client(settings: S3Settings) -> S3Client:
    session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
    config = Config(
        retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        # One connection per transfer thread plus a few for concurrent open()/read_range().
        max_pool_connections=settings.max_concurrency + 8,
        user_agent_extra="sagemaker-training-emulator",
    )
    return session.client("s3", endpoint_url=settings.endpoint_url, config=config)


# -- the error boundary ---------------------------------------------------------------------


READ_PERMISSIONS = "s3:ListBucket and s3:GetObject"
WRITE_PERMISSIONS = "s3:ListBucket, s3:PutObject and s3:DeleteObject"


@contextmanager
def _translated(
    uri: str, missing: type[Exception] = SourceError, needs: str = READ_PERMISSIONS
) -> Iterator[None]:
    """Turn botocore errors into SourceError with what to do; a missing object into ``missing``.

    ``needs`` names the permissions an access-denied message asks for."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _NOT_FOUND_CODES and missing is not SourceError:
            raise missing(f"{uri}: no such object") from exc
        message = str(error.get("Message", ""))
        raise SourceError(_client_error_text(uri, code, message, needs)) from exc
    except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
        raise SourceError(
            f"{uri}: no usable AWS credentials ({exc}); set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or choose a profile with AWS_PROFILE / --profile"
        ) from exc
    except ProfileNotFound as exc:
        raise SourceError(f"{uri}: {exc}; check AWS_PROFILE / --profile") from exc
    except BotoConnectionError as exc:  # botocore's message names the URL it tried
        raise SourceError(
            f"{uri}: cannot reach the S3 endpoint ({exc}); check that the server is running "
            "and the endpoint setting (--s3-endpoint-url, AWS_ENDPOINT_URL_S3)"
        ) from exc
    except BotoCoreError as exc:
        raise SourceError(f"{uri}: S3 request failed: {exc}") from exc
    except RetriesExceededError as exc:
        raise SourceError(
            f"{uri}: the download kept failing ({exc.last_exception}); try again"
        ) from exc


def _client_error_text(uri: str, code: str, message: str, needs: str = READ_PERMISSIONS) -> str:
    if code == "NoSuchBucket":
        return (
            f"{uri}: the bucket does not exist; check the bucket name, and the endpoint "
            "(--s3-endpoint-url / AWS_ENDPOINT_URL_S3) when you use a local S3 server"
        )
    if code in _NOT_FOUND_CODES:
        return f"{uri}: no such object or bucket; check the S3 URI"
    if code in _CREDENTIAL_CODES:
        return (
            f"{uri}: the S3 server rejected the credentials ({code}); check AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY or the profile (AWS_PROFILE / --profile)"
        )
    if code in _DENIED_CODES:
        return (
            f"{uri}: access denied ({code}); the credentials in use need {needs} on this location"
        )
    if code == "PreconditionFailed":
        return f"{uri}: the object changed while it was being read; run the job again"
    return f"{uri}: S3 error {code or 'unknown'}: {message}"


# -- the source -----------------------------------------------------------------------------


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
        return _translated(uri or self.uri, missing)

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
            raise SourceError(_client_error_text(self.uri, "NoSuchBucket", ""))
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
        entries = _unique_targets(entries)
        for parent in {(dest / e.relative_path).parent for e in entries}:
            parent.mkdir(parents=True, exist_ok=True)
        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNKSIZE,
            max_concurrency=self.settings.max_concurrency,
            max_io_queue=MAX_IO_QUEUE,
            io_chunksize=IO_CHUNKSIZE,
        )
        pending: deque[tuple[Entry, Path, TransferFuture]] = deque()
        with self._errors(), TransferManager(self._client(), config) as manager:
            for entry in entries:
                target = dest / entry.relative_path
                subscriber = _TransferSubscriber(entry, progress)
                future = manager.download(
                    self.bucket, entry.location, str(target), subscribers=[subscriber]
                )
                pending.append((entry, target, future))
                if len(pending) >= DOWNLOAD_WINDOW:
                    self._finish(*pending.popleft())
            while pending:
                self._finish(*pending.popleft())

    def _finish(self, entry: Entry, target: Path, future: TransferFuture) -> None:
        with self._errors(self.location.uri(entry.location)):
            try:
                future.result()
            except OSError as exc:
                raise SourceError(f"{target}: cannot write the object ({exc})") from exc
        size = target.stat().st_size
        if size != entry.size:
            raise SourceError(
                f"{self.location.uri(entry.location)}: downloaded {size} bytes but the listing "
                f"said {entry.size}; was the object replaced during the download?"
            )


def _unique_targets(entries: list[Entry]) -> list[Entry]:
    """Entries with distinct targets; refuses two objects for one path or a file/folder clash."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        safe_relative_path(entry.relative_path)
        other = by_path.setdefault(entry.relative_path, entry)
        if other.location != entry.location:
            raise SourceError(
                f"objects {other.location!r} and {entry.location!r} would both be written to "
                f"{entry.relative_path!r}; use a prefix ending in '/' or rename one"
            )
    folders = {p for path in by_path for p in _parents(path)}
    if clash := sorted(folders & by_path.keys()):
        raise SourceError(
            f"{clash[0]!r} is both an object and a folder of other objects; "
            "a file system cannot hold both; rename or remove it"
        )
    return list(by_path.values())


def _parents(path: str) -> Iterator[str]:
    parts = path.split("/")
    for end in range(1, len(parts)):
        yield "/".join(parts[:end])


class _TransferSubscriber(BaseSubscriber):
    """Feeds s3transfer's callbacks into Progress; gives it size and ETag to skip a HEAD."""

    def __init__(self, entry: Entry, progress: Progress) -> None:
        self._entry = entry
        self._progress = progress

    def on_queued(self, future: TransferFuture, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._entry.size)
        if self._entry.etag:
            # Ranged parts of a big object are then fetched with If-Match: no torn files.
            future.meta.provide_object_etag(self._entry.etag)

    def on_progress(self, future: TransferFuture, bytes_transferred: int, **kwargs: Any) -> None:
        # Negative after a retried part: s3transfer rewinds what the failed attempt counted.
        self._progress.advance(bytes_transferred)

    def on_done(self, future: TransferFuture, **kwargs: Any) -> None:
        try:
            future.result()
        except BaseException:
            return  # reported by the caller
        self._progress.object_done()


# -- streaming reads ------------------------------------------------------------------------


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
        with _translated(self._uri, missing=FileNotFoundError):
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
    with _translated(uri):
        client = s3_client(settings)
    raw = _ObjectReader(client, location.bucket, location.key, uri)
    return io.BufferedReader(raw, buffer_size=OPEN_BUFFER)


# -- listing, writing, deleting: job outputs and checkpoints ---------------------------------

# DeleteObjects takes at most 1000 keys a request.
DELETE_BATCH = 1000
# Multipart uploads from an open file read each part into memory: at most this many at once.
UPLOAD_CHUNKS_IN_MEMORY = 4


def list_objects(uri: str, settings: S3Settings | None = None) -> list[Entry]:
    """Every object under the key prefix of ``uri``, sorted; none at all is not an error.

    Names follow ``relative_name`` (a key that would escape is refused); folder markers are
    skipped. A missing bucket, denied access or an unreachable endpoint raise SourceError."""
    location = parse_s3_uri(uri)
    found: list[Entry] = []
    with _translated(uri):
        pages = s3_client(settings).get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=location.bucket, Prefix=location.key):
            for obj in page.get("Contents", []):
                key, size = obj["Key"], obj["Size"]
                if _is_folder_marker(key, size):
                    continue
                found.append(Entry(relative_name(location.key, key), key, size, obj.get("ETag")))
    return sorted(found)


def check_bucket(
    uri: str, what: str, settings: S3Settings | None = None, needs: str = WRITE_PERMISSIONS
) -> None:
    """Refuse a location the job will write unless its bucket exists and answers (HeadBucket).

    ``what`` names the request member in the message (``OutputDataConfig.S3OutputPath``)."""
    location = parse_s3_uri(uri)
    try:
        with _translated(uri, missing=FileNotFoundError, needs=needs):
            s3_client(settings).head_bucket(Bucket=location.bucket)
    except FileNotFoundError:  # HEAD answers a bare 404 for a missing bucket
        text = _client_error_text(uri, "NoSuchBucket", "")
        raise SourceError(f"{what}: {text}") from None
    except SourceError as exc:
        raise SourceError(f"{what}: {exc}") from exc


@dataclass(frozen=True)
class Upload:
    """One object to write at ``key``: from a file path, or from an open seekable binary file
    (a file that may change meanwhile: ``checkpoints.fixed_size_file``)."""

    key: str
    source: Path | BinaryIO
    size: int | None = None  # known size; else found by seeking


def upload_objects(
    bucket: str,
    uploads: list[Upload],
    settings: S3Settings | None = None,
    progress: Progress = NO_PROGRESS,
) -> dict[str, SourceError]:
    """Write every upload with s3transfer's TransferManager: concurrent, multipart parts of
    ``MULTIPART_CHUNKSIZE`` above ``MULTIPART_THRESHOLD`` (more for objects that would need
    over 10,000 parts). Returns the failures by key; empty when everything was written."""
    settings = settings or S3Settings.from_environ()
    config = TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD,
        multipart_chunksize=MULTIPART_CHUNKSIZE,
        max_concurrency=settings.max_concurrency,
        max_io_queue=MAX_IO_QUEUE,
        io_chunksize=IO_CHUNKSIZE,
    )
    config.max_in_memory_upload_chunks = UPLOAD_CHUNKS_IN_MEMORY  # not an argument of boto3's
    with _translated(f"s3://{bucket}/", needs=WRITE_PERMISSIONS):
        client = s3_client(settings)
    failures: dict[str, SourceError] = {}
    with TransferManager(client, config) as manager:
        submitted = []
        for upload in uploads:
            source = str(upload.source) if isinstance(upload.source, Path) else upload.source
            subscriber = _UploadSubscriber(upload.size, progress)
            future = manager.upload(source, bucket, upload.key, subscribers=[subscriber])
            submitted.append((upload, future))
        for upload, future in submitted:
            uri = f"s3://{bucket}/{upload.key}"
            try:
                with _translated(uri, needs=WRITE_PERMISSIONS):
                    try:
                        future.result()
                    except OSError as exc:
                        raise SourceError(f"{upload.source}: cannot read it ({exc})") from exc
            except SourceError as exc:
                failures[upload.key] = exc
    return failures


class _UploadSubscriber(BaseSubscriber):
    def __init__(self, size: int | None, progress: Progress) -> None:
        self._size = size
        self._progress = progress

    def on_queued(self, future: TransferFuture, **kwargs: Any) -> None:
        if self._size is not None:
            future.meta.provide_transfer_size(self._size)

    def on_progress(self, future: TransferFuture, bytes_transferred: int, **kwargs: Any) -> None:
        self._progress.advance(bytes_transferred)

    def on_done(self, future: TransferFuture, **kwargs: Any) -> None:
        try:
            future.result()
        except BaseException:
            return
        self._progress.object_done()


def delete_objects(
    bucket: str, keys: list[str], settings: S3Settings | None = None
) -> dict[str, SourceError]:
    """Delete ``keys`` (batches of 1000); return the keys the server refused to delete.

    A request that fails as a whole (unreachable, no such bucket) raises SourceError."""
    failures: dict[str, SourceError] = {}
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        with _translated(f"s3://{bucket}/", needs=WRITE_PERMISSIONS):
            response = s3_client(settings).delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
        for error in response.get("Errors", []):
            key = error.get("Key", "")
            text = _client_error_text(
                f"s3://{bucket}/{key}",
                error.get("Code", ""),
                error.get("Message", ""),
                WRITE_PERMISSIONS,
            )
            failures[key] = SourceError(text)
    return failures


def credentials_environment(settings: S3Settings | None = None) -> dict[str, str]:
    """The credentials boto3 resolves now (environment, profile, SSO, instance role...) as
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, plus AWS_ENDPOINT_URL_S3
    when an endpoint is set: what ``--pass-aws-credentials`` gives the container.

    A snapshot: temporary credentials are not refreshed inside the container."""
    settings = settings or S3Settings.from_environ()
    with _translated("--pass-aws-credentials"):
        session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
        credentials = session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise SourceError(
            "--pass-aws-credentials: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or choose a profile with AWS_PROFILE / --profile"
        )
    environment = {
        "AWS_ACCESS_KEY_ID": frozen.access_key,
        "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
    }
    if frozen.token:
        environment["AWS_SESSION_TOKEN"] = frozen.token
    if settings.endpoint_url:
        environment["AWS_ENDPOINT_URL_S3"] = settings.endpoint_url
    return environment
