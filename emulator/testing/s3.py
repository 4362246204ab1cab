"""What the ``emulator_s3`` fixture gives: the embedded S3 store of `emulator serve --s3`
(SeaweedFS, server/s3store.py), started once per session, with helpers to fill and read it.

Jobs of the ``emulator`` fixture in a test that uses ``emulator_s3`` reach this store as
`serve --s3` wires its jobs: the emulator with ``settings`` (RunOptions.s3) and every container
with its own endpoint and credentials (RunOptions.container_s3: S3_ENDPOINT_URL,
AWS_ENDPOINT_URL_S3 and the store's key, never the user's).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from emulator.config import S3Settings
from emulator.errors import EmulatorError
from emulator.plan.credentials import ContainerS3
from emulator.server.s3store import EmbeddedS3
from emulator.storage import Upload, is_s3_uri, location, open_uri
from emulator.storage.s3 import S3Address, parse_s3_uri, s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3Store:
    """A running embedded S3 store; ``start``/``stop`` (or a ``with`` block)."""

    def __init__(self, directory: Path) -> None:
        self._store = EmbeddedS3(directory)
        self._buckets: set[str] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> S3Store:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the store (from a thread that lives as long as it: see server/s3store.py)."""
        self._store.start()

    def stop(self) -> None:
        self._store.stop()

    # -- how clients reach it --------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """For clients on this machine (boto3 in the test)."""
        return self._store.endpoint_url

    @property
    def container_endpoint_url(self) -> str:
        """For the jobs' containers (the Docker bridge's gateway)."""
        return self._store.container_endpoint_url

    @property
    def settings(self) -> S3Settings:
        """How the emulator reaches the store (endpoint, region, the store's own key)."""
        return self._store.settings

    def container_access(self) -> ContainerS3:
        return self._store.container_access()

    @property
    def client(self) -> S3Client:
        """A boto3 S3 client of the store, for what the helpers do not cover."""
        return s3_client(self.settings)

    # -- helpers ---------------------------------------------------------------------------

    def bucket(self, name: str) -> str:
        """Create the bucket ``name`` unless it exists (the store lives for the session:
        tests that name the same bucket share it); return ``s3://name``."""
        with self._lock:
            if name not in self._buckets:
                client = self.client
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=name)
                self._buckets.add(name)
        return f"s3://{name}"

    def put(self, uri: str, data: bytes | str | os.PathLike[str]) -> str:
        """Write ``data`` at ``uri`` (its bucket created when needed) and return ``uri``.

        ``data`` is the object's bytes, or a path: a file (written at ``uri``, or under it
        with its own name when ``uri`` ends with '/'), or a folder, whose files are written
        under the prefix ``uri`` by their relative paths, recursively."""
        address = _address(uri)
        self.bucket(address.bucket)
        if isinstance(data, bytes | bytearray):
            folder, name = _split(uri)
            uploads = [Upload(name, io.BytesIO(data), size=len(data))]
        else:
            path = Path(data)
            if path.is_dir():
                folder = uri
                files = sorted(p for p in path.rglob("*") if p.is_file())
                uploads = [Upload(p.relative_to(path).as_posix(), p) for p in files]
            elif path.is_file():
                folder, name = (uri, path.name) if uri.endswith("/") else _split(uri)
                uploads = [Upload(name, path)]
            else:
                raise EmulatorError(f"emulator_s3.put: {path} is neither a file nor a folder")
        failures = location(folder, self.settings).upload(uploads)
        if failures:
            name = sorted(failures)[0]
            raise EmulatorError(f"emulator_s3.put {uri}: {name}: {failures[name]}")
        return uri

    def get(self, uri: str) -> bytes:
        """The bytes of the object at ``uri`` (SourceError when there is none)."""
        _address(uri)
        with open_uri(uri, self.settings) as stream:
            return stream.read()


def _address(uri: str) -> S3Address:
    if not is_s3_uri(uri) or not uri.startswith("s3://"):
        raise EmulatorError(f"emulator_s3: {uri!r} is not an s3://BUCKET/KEY URI")
    return parse_s3_uri(uri)


def _split(uri: str) -> tuple[str, str]:
    """(folder URI, object name) of an object's URI."""
    folder, _, name = uri.rpartition("/")
    if not name or folder in ("s3:", "s3:/"):
        raise EmulatorError(f"emulator_s3: {uri!r} names no object (s3://BUCKET/KEY)")
    return folder, name
