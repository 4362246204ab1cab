"""An S3 key prefix as a ``Location``: checkpoints and job outputs. The writes live here and in
``transfer``: ``check_bucket`` (preflight of a location the job writes), ``upload`` (through
``transfer.upload_objects``), ``delete_objects`` (batched DeleteObjects)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import BinaryIO

from emulator.config import S3Settings
from emulator.errors import SourceError
from emulator.progress import NO_PROGRESS, Progress
from emulator.storage.base import Entry, Location, Upload
from emulator.storage.s3.client import s3_client
from emulator.storage.s3.errors import WRITE_PERMISSIONS, client_error_text, translated
from emulator.storage.s3.source import S3Source, list_objects
from emulator.storage.s3.transfer import upload_objects
from emulator.storage.s3.uris import parse_s3_uri

# DeleteObjects takes at most 1000 keys a request.
DELETE_BATCH = 1000


def check_bucket(
    uri: str, what: str, settings: S3Settings | None = None, needs: str = WRITE_PERMISSIONS
) -> None:
    """Refuse a location the job will write unless its bucket exists and answers (HeadBucket).

    ``what`` names the request member in the message (``OutputDataConfig.S3OutputPath``)."""
    location = parse_s3_uri(uri)
    try:
        with translated(uri, missing=FileNotFoundError, needs=needs):
            s3_client(settings).head_bucket(Bucket=location.bucket)
    except FileNotFoundError:  # HEAD answers a bare 404 for a missing bucket
        text = client_error_text(uri, "NoSuchBucket", "")
        raise SourceError(f"{what}: {text}") from None
    except SourceError as exc:
        raise SourceError(f"{what}: {exc}") from exc


def delete_objects(
    bucket: str, keys: list[str], settings: S3Settings | None = None
) -> dict[str, SourceError]:
    """Delete ``keys`` (batches of 1000); return the keys the server refused to delete.

    A request that fails as a whole (unreachable, no such bucket) raises SourceError."""
    failures: dict[str, SourceError] = {}
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        with translated(f"s3://{bucket}/", needs=WRITE_PERMISSIONS):
            response = s3_client(settings).delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
        for error in response.get("Errors", []):
            key = error.get("Key", "")
            text = client_error_text(
                f"s3://{bucket}/{key}",
                error.get("Code", ""),
                error.get("Message", ""),
                WRITE_PERMISSIONS,
            )
            failures[key] = SourceError(text)
    return failures


class S3Folder(Location):
    """The keys ``<prefix>/<name>`` of ``s3://bucket/prefix`` (with or without the final '/')."""

    holds_symlinks = False

    def __init__(self, uri: str, settings: S3Settings | None = None) -> None:
        self.uri = uri
        self.settings = settings  # None: from the environment
        address = parse_s3_uri(uri)
        self.bucket = address.bucket
        key = address.key
        self.prefix = key if not key or key.endswith("/") else key + "/"
        self.folder_uri = f"s3://{self.bucket}/{self.prefix}"
        self._reader: S3Source | None = None

    def _source(self) -> S3Source:
        if self._reader is None:
            self._reader = S3Source(self.folder_uri, self.settings)
        return self._reader

    def check_writable(self, what: str) -> None:
        check_bucket(self.uri, what, self.settings)

    def scratch_dir(self) -> Path | None:
        return None

    def listing(self) -> list[Entry]:
        return list_objects(self.folder_uri, self.settings)

    def open(self, entry: Entry) -> BinaryIO:
        return self._source().open(entry)

    def read_range(self, entry: Entry, offset: int, length: int) -> bytes:
        return self._source().read_range(entry, offset, length)

    def download(self, entries: list[Entry], dest: Path, progress: Progress = NO_PROGRESS) -> None:
        self._source().download(entries, dest, progress)

    def upload(
        self, uploads: list[Upload], progress: Progress = NO_PROGRESS
    ) -> dict[str, SourceError]:
        if not uploads:
            return {}
        keyed = [dataclasses.replace(u, name=self.prefix + u.name) for u in uploads]
        failures = upload_objects(self.bucket, keyed, self.settings, progress)
        return self._by_name(failures)

    def replace_folder(self, name: str, uploads: list[Upload]) -> dict[str, SourceError]:
        """Upload first, then delete the keys under ``name/`` that were not written: readers
        never find the folder empty, and a failed upload leaves the earlier objects."""
        folder = name.rstrip("/") + "/"
        named = [dataclasses.replace(u, name=folder + u.name) for u in uploads]
        failures = self.upload(named)
        if failures:
            return {key.removeprefix(folder): error for key, error in failures.items()}
        written = {self.prefix + upload.name for upload in named}
        listed = list_objects(self.folder_uri + folder, self.settings)
        stale = [entry.location for entry in listed if entry.location not in written]
        return {key.removeprefix(folder): error for key, error in self._delete(stale).items()}

    def delete(self, names: list[str]) -> dict[str, SourceError]:
        return self._delete([self.prefix + name for name in names])

    def _delete(self, keys: list[str]) -> dict[str, SourceError]:
        """Failures by name; a request that fails as a whole fails every name."""
        if not keys:
            return {}
        try:
            failures = delete_objects(self.bucket, keys, self.settings)
        except SourceError as exc:
            return {key.removeprefix(self.prefix): exc for key in keys}
        return self._by_name(failures)

    def _by_name(self, failures: dict[str, SourceError]) -> dict[str, SourceError]:
        return {key.removeprefix(self.prefix): error for key, error in failures.items()}

    def uri_of(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"
