"""Local data staged under the staging prefix: planned (hashed, keyed) first, then uploaded.

Planning reads the local files only (``--dry-run`` stops there and contacts nothing). Uploading
lists each destination first and skips what is already there: under a content-addressed folder
(``data/<sha256>/``, ``manifests/<sha256>/``) an object of the same size is the same file, so
a second submit of unchanged data uploads nothing; checkpoint files (per job, not content
keyed) are skipped when size and ETag (S3's MD5, or multipart MD5-of-MD5s) match. Every byte
goes through ``emulator.storage`` (boto3 lives there), with one progress bar per location.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emulator.config import S3Settings
from emulator.errors import SourceError
from emulator.progress import NO_PROGRESS, Progress
from emulator.storage import Entry, Upload
from emulator.storage.local import LocalSource, local_path
from emulator.storage.manifest import ManifestSource, read_manifest
from emulator.storage.uris import is_s3_uri
from emulator.submit.rewrite import (
    LocalLocation,
    checkpoint_uri,
    data_uri,
    manifest_uri,
    output_uri,
)

READ_CHUNK = 1024 * 1024
MiB = 1024 * 1024
# How storage's uploads split an object (s3transfer: multipart from the threshold on, parts of
# the chunk size): what a multipart ETag is computed over.
MULTIPART_THRESHOLD = 16 * MiB
MULTIPART_CHUNKSIZE = 16 * MiB
MAX_PARTS = 10_000


@dataclass(frozen=True)
class StagedFile:
    """One object to have at ``uri``: a local file, or a generated body (a manifest)."""

    uri: str
    size: int
    path: Path | None = None
    body: bytes | None = None
    etag: str | None = None  # compared with the listing's ETag (None: the size is enough)


@dataclass(frozen=True)
class StagedLocation:
    """A local location of the request and what it becomes: ``uri`` in the request sent,
    ``files`` to have under it (none for an output location)."""

    member: str
    origin: str
    uri: str
    files: tuple[StagedFile, ...] = ()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def plan(location: LocalLocation, staging: str, job_name: str) -> StagedLocation:
    """What ``location`` becomes under ``staging`` (reads and hashes the local files)."""
    member, origin = location.member, location.uri
    if location.kind == "output":
        return StagedLocation(member, origin, output_uri(staging, location))
    if location.kind == "checkpoint":
        return _checkpoint(member, origin, checkpoint_uri(staging, job_name))
    if location.kind == "manifest":
        return _manifest(member, origin, staging)
    if location.kind == "augmented-manifest":
        path = local_path(origin)
        _check_references(path, member)
        staged = _hashed_file(path, lambda digest: manifest_uri(staging, digest, path.name))
        return StagedLocation(member, origin, staged.uri, (staged,))
    entries = LocalSource(origin).entries()
    uri, files = _tree(entries, staging)
    return StagedLocation(member, origin, uri, files)


def _check_references(path: Path, member: str) -> None:
    """An augmented manifest is uploaded as it is: its ``-ref`` attributes must be S3 URIs
    already (a remote job cannot read this machine's files)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read it ({exc.strerror})") from exc
    for number, line in enumerate(lines, start=1):
        try:
            item = json.loads(line) if line.strip() else {}
        except ValueError:
            continue  # the remote job reports a malformed line, as it would
        for name, value in item.items() if isinstance(item, dict) else ():
            if name.endswith("-ref") and isinstance(value, str) and not is_s3_uri(value):
                raise SourceError(
                    f"{member}: {path} line {number}: {name} {value!r} is not an S3 URI; "
                    "upload the files it names and give their s3:// URIs"
                )


def _tree(entries: list[Entry], staging: str) -> tuple[str, tuple[StagedFile, ...]]:
    """Files keyed under ``data/<digest>/``, the digest covering every name, size and sha256:
    the same tree always gets the same folder, and any change a new one."""
    digests = {entry.relative_path: _sha256(Path(entry.location)) for entry in entries}
    tree = hashlib.sha256()
    for entry in sorted(entries):
        tree.update(
            f"{entry.relative_path}\0{entry.size}\0{digests[entry.relative_path]}\n".encode()
        )
    folder = data_uri(staging, tree.hexdigest())
    files = tuple(
        StagedFile(folder + entry.relative_path, entry.size, path=Path(entry.location))
        for entry in sorted(entries)
    )
    return folder, files


def _manifest(member: str, origin: str, staging: str) -> StagedLocation:
    """A local ManifestFile: with an S3 prefix it is uploaded as it is; with a local one its
    files are uploaded as a tree and the manifest rewritten to name that tree's folder."""
    path = local_path(origin)
    prefix, keys = read_manifest(origin)
    if is_s3_uri(prefix):
        staged = _hashed_file(path, lambda digest: manifest_uri(staging, digest, path.name))
        return StagedLocation(member, origin, staged.uri, (staged,))
    folder, files = _tree(ManifestSource(origin).entries(), staging)
    body = json.dumps([{"prefix": folder}, *keys], indent=1).encode()
    digest = hashlib.sha256(body).hexdigest()
    generated = StagedFile(manifest_uri(staging, digest, path.name), len(body), body=body)
    return StagedLocation(member, origin, generated.uri, (*files, generated))


def _checkpoint(member: str, origin: str, folder: str) -> StagedLocation:
    """A local checkpoint folder's files (none when it is missing or empty): the job starts
    from them, as a local run restores them."""
    path = local_path(origin)
    if not path.is_dir() or not any(path.iterdir()):
        return StagedLocation(member, origin, folder)
    files = tuple(
        StagedFile(
            folder + entry.relative_path,
            entry.size,
            path=Path(entry.location),
            etag=s3_etag(Path(entry.location), entry.size),
        )
        for entry in LocalSource(str(path)).entries()
    )
    return StagedLocation(member, origin, folder, files)


def _hashed_file(path: Path, uri_for: Callable[[str], str]) -> StagedFile:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SourceError(f"{path}: cannot read it ({exc.strerror})") from exc
    return StagedFile(uri_for(_sha256(path)), size, path=path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(READ_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read it ({exc.strerror})") from exc
    return digest.hexdigest()


def s3_etag(path: Path, size: int) -> str:
    """The ETag S3 gives this file when storage uploads it: MD5, or for a multipart upload
    the MD5 of the parts' MD5s and ``-<parts>``."""
    if size < MULTIPART_THRESHOLD:
        return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    part = MULTIPART_CHUNKSIZE
    while -(-size // part) > MAX_PARTS:
        part *= 2
    parts = []
    with path.open("rb") as stream:
        while chunk := stream.read(part):
            parts.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"


def missing_files(staged: StagedLocation, settings: S3Settings | None) -> list[StagedFile]:
    """The files not yet at their URI (one listing of each folder they go to)."""
    from emulator.storage.s3 import list_objects, parse_s3_uri

    folders = {posixpath.dirname(f.uri) + "/" for f in staged.files}
    # One listing per outermost folder: a listing covers every folder below it.
    roots = sorted(f for f in folders if not any(f != o and f.startswith(o) for o in folders))
    present: dict[str, Entry] = {}
    for folder in roots:
        for entry in list_objects(folder, settings):
            present[entry.location] = entry  # by key
    missing = []
    for file in staged.files:
        found = present.get(parse_s3_uri(file.uri).key)
        same = found is not None and found.size == file.size
        if same and file.etag is not None:
            same = found is not None and (found.etag or "").strip('"') == file.etag
        if not same:
            missing.append(file)
    return missing


def upload(
    staged: StagedLocation,
    files: list[StagedFile],
    settings: S3Settings | None,
    progress: Progress = NO_PROGRESS,
) -> None:
    """Upload ``files`` of one location (one progress bar); SourceError naming what failed."""
    from emulator.storage.s3 import parse_s3_uri, upload_objects

    if not files:
        return
    bucket = parse_s3_uri(staged.uri).bucket
    uploads = [
        Upload(
            parse_s3_uri(f.uri).key,
            f.path if f.path is not None else io.BytesIO(f.body or b""),
            f.size,
        )
        for f in files
    ]
    progress.start(f"Uploading {staged.member}", sum(f.size for f in files), len(files))
    try:
        failures = upload_objects(bucket, uploads, settings, progress)
    finally:
        progress.finish()
    if failures:
        key, error = next(iter(failures.items()))
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise SourceError(f"{staged.member}: uploading s3://{bucket}/{key} failed{more}: {error}")
