"""Whole-object transfers with s3transfer's TransferManager: parallel requests, multipart parts
above ``MULTIPART_THRESHOLD``, bounded memory. One ``TransferConfig`` and one progress
subscriber serve downloads (channels in File mode, checkpoint restore) and uploads (job
outputs, checkpoints)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boto3.s3.transfer import TransferConfig
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber

from emulator.config import S3Settings
from emulator.errors import SourceError
from emulator.progress import NO_PROGRESS, Progress
from emulator.storage.base import Entry, Upload, safe_relative_path
from emulator.storage.s3.client import s3_client
from emulator.storage.s3.errors import WRITE_PERMISSIONS, translated

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from s3transfer.futures import TransferFuture

MiB = 1024 * 1024
# Objects above the threshold are transferred as parallel ranged parts of the chunk size.
MULTIPART_THRESHOLD = 16 * MiB
MULTIPART_CHUNKSIZE = 16 * MiB
# s3transfer's write queue: at most MAX_IO_QUEUE chunks of IO_CHUNKSIZE wait in memory
# (32 MiB). 1 MiB chunks instead of the default 256 KiB: ~30% faster on big objects.
MAX_IO_QUEUE = 32
IO_CHUNKSIZE = 1 * MiB
# Transfer futures kept alive at once, so a million-object channel needs bounded memory.
DOWNLOAD_WINDOW = 1000
# Multipart uploads from an open file read each part into memory: at most this many at once.
UPLOAD_CHUNKS_IN_MEMORY = 4


def transfer_config(settings: S3Settings) -> TransferConfig:
    config = TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD,
        multipart_chunksize=MULTIPART_CHUNKSIZE,
        max_concurrency=settings.max_concurrency,
        max_io_queue=MAX_IO_QUEUE,
        io_chunksize=IO_CHUNKSIZE,
    )
    config.max_in_memory_upload_chunks = UPLOAD_CHUNKS_IN_MEMORY  # not an argument of boto3's
    return config


class ProgressSubscriber(BaseSubscriber):
    """Feeds s3transfer's callbacks into Progress; gives it the size (and, for a download, the
    ETag) so that no HEAD request is made."""

    def __init__(self, progress: Progress, size: int | None, etag: str | None = None) -> None:
        self._progress = progress
        self._size = size
        self._etag = etag

    def on_queued(self, future: TransferFuture, **kwargs: Any) -> None:
        if self._size is not None:
            future.meta.provide_transfer_size(self._size)
        if self._etag:
            # Ranged parts of a big object are then fetched with If-Match: no torn files.
            future.meta.provide_object_etag(self._etag)

    def on_progress(self, future: TransferFuture, bytes_transferred: int, **kwargs: Any) -> None:
        # Negative after a retried part: s3transfer rewinds what the failed attempt counted.
        self._progress.advance(bytes_transferred)

    def on_done(self, future: TransferFuture, **kwargs: Any) -> None:
        try:
            future.result()
        except BaseException:
            return  # reported by the caller
        self._progress.object_done()


def download_objects(
    client: S3Client,
    bucket: str,
    entries: list[Entry],
    dest: Path,
    settings: S3Settings,
    progress: Progress = NO_PROGRESS,
    uri: str = "",
) -> None:
    """Copy the objects (``entry.location`` is the key) into ``dest``/relative_path, sizes
    checked against the listing. ``uri`` names the source in error messages."""
    entries = unique_targets(entries)
    for parent in {(dest / e.relative_path).parent for e in entries}:
        parent.mkdir(parents=True, exist_ok=True)
    pending: deque[tuple[Entry, Path, TransferFuture]] = deque()
    with (
        translated(uri or f"s3://{bucket}/"),
        TransferManager(client, transfer_config(settings)) as manager,
    ):
        for entry in entries:
            target = dest / entry.relative_path
            subscriber = ProgressSubscriber(progress, entry.size, entry.etag)
            future = manager.download(bucket, entry.location, str(target), subscribers=[subscriber])
            pending.append((entry, target, future))
            if len(pending) >= DOWNLOAD_WINDOW:
                _finish_download(bucket, *pending.popleft())
        while pending:
            _finish_download(bucket, *pending.popleft())


def _finish_download(bucket: str, entry: Entry, target: Path, future: TransferFuture) -> None:
    uri = f"s3://{bucket}/{entry.location}"
    with translated(uri):
        try:
            future.result()
        except OSError as exc:
            raise SourceError(f"{target}: cannot write the object ({exc})") from exc
    size = target.stat().st_size
    if size != entry.size:
        raise SourceError(
            f"{uri}: downloaded {size} bytes but the listing said {entry.size}; was the object "
            "replaced during the download?"
        )


def unique_targets(entries: list[Entry]) -> list[Entry]:
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


def upload_objects(
    bucket: str,
    uploads: list[Upload],
    settings: S3Settings | None = None,
    progress: Progress = NO_PROGRESS,
) -> dict[str, SourceError]:
    """Write every upload (``upload.name`` is the key): concurrent, multipart parts of
    ``MULTIPART_CHUNKSIZE`` above ``MULTIPART_THRESHOLD`` (more for objects that would need
    over 10,000 parts). Returns the failures by key; empty when everything was written."""
    settings = settings or S3Settings.from_environ()
    with translated(f"s3://{bucket}/", needs=WRITE_PERMISSIONS):
        client = s3_client(settings)
    failures: dict[str, SourceError] = {}
    with TransferManager(client, transfer_config(settings)) as manager:
        submitted = []
        for upload in uploads:
            source = str(upload.source) if isinstance(upload.source, Path) else upload.source
            subscriber = ProgressSubscriber(progress, upload.size)
            future = manager.upload(source, bucket, upload.name, subscribers=[subscriber])
            submitted.append((upload, future))
        for upload, future in submitted:
            try:
                with translated(f"s3://{bucket}/{upload.name}", needs=WRITE_PERMISSIONS):
                    try:
                        future.result()
                    except OSError as exc:
                        raise SourceError(f"{upload.source}: cannot read it ({exc})") from exc
            except SourceError as exc:
                failures[upload.name] = exc
    return failures
