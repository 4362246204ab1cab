"""What a Pipe channel sends, epoch by epoch: items, their order, and their bytes.

An *item* is one payload: it becomes one RecordIO record, or is written as-is. It is an object
of the channel's Source, or one attribute of one augmented-manifest line. A *unit* is what
shuffling and sharding move: an object, or a whole manifest line (its attributes stay together,
in AttributeNames order).

Order of epoch ``e`` (``epoch_order``):

1. units in key order (objects) or file order (manifest lines);
2. with a shuffle seed ``s``: ``random.Random(f"{s}:{e}").shuffle(order)``, a new order every
   epoch and the same sequence of orders for the same seed in any process (str seeds are hashed
   with SHA-512, whatever PYTHONHASHSEED is);
3. with ``Shard(index, count)``: every count-th unit of that order, starting at ``index``
   (0-based). Without a seed this is round-robin over sorted keys. With a seed it is what the
   SageMaker docs describe for ShardedByS3Key + ShuffleConfig: every host shuffles alike and
   takes its slice, so a unit may go to another host in the next epoch. A caller that shards
   entries itself passes ``shard=None``.

Augmented manifests (JSON Lines) are read once with ``open_uri`` when the items are built, so a
bad line fails before the container starts; only the chosen attribute values stay in memory.
Blank lines are skipped. Every line must be a JSON object holding every AttributeName. A name
ending in ``-ref`` holds a URI (string) whose object is streamed with ``open_uri`` (and gunzipped
under CompressionType=Gzip). Any other value is sent inline, never gunzipped: a string as its
UTF-8 bytes, anything else as compact JSON (``3`` -> ``3``, ``true`` -> ``true``, ``[1, 2]`` ->
``[1,2]``; ``json.dumps(v, separators=(",", ":"), ensure_ascii=False)``).

Streams are read with ``read(n)`` only, CHUNK_SIZE at a time. Gzip is decompressed incrementally
with at most CHUNK_SIZE bytes of output per step (no zip-bomb blow-up); multi-member files and
zero padding after a member are accepted, as gzip(1) does.
"""

from __future__ import annotations

import functools
import io
import json
import os
import random
import stat
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, BinaryIO, NamedTuple

from emulator.errors import SourceError
from emulator.storage import Entry, Source, is_local_uri, open_uri
from emulator.storage.local import LocalSource, local_path

if TYPE_CHECKING:
    from emulator.config import S3Settings

CHUNK_SIZE = 1024 * 1024
REF_SUFFIX = "-ref"
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer required


class PipeItem(NamedTuple):
    """One payload. ``size`` is its stored length when known before opening (None: unknown);
    ``inline`` payloads are bytes in memory: opening them is free and they are never gunzipped.
    ``path``, when set, is a local file holding the payload, which a reader may open itself
    instead of calling ``open`` (the Pipe feeder does: os.open and splice, no file object).
    A NamedTuple, not a frozen dataclass: one is made per object per epoch, and that costs
    a third as much."""

    name: str
    open: Callable[[], BinaryIO]
    size: int | None
    inline: bool = False
    path: str | None = None


@dataclass(frozen=True)
class Shard:
    """This host's share of the units: every ``count``-th, starting at ``index`` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in 0..{self.count - 1}, not {self.index}")


def epoch_order(
    count: int, epoch: int, shuffle_seed: int | None = None, shard: Shard | None = None
) -> list[int]:
    """Indices of the units sent in ``epoch`` (see the module docstring for the rule)."""
    order = list(range(count))
    if shuffle_seed is not None:
        random.Random(f"{shuffle_seed}:{epoch}").shuffle(order)
    if shard is not None:
        order = order[shard.index :: shard.count]
    return order


class LocalFiles(NamedTuple):
    """Units that are each one local file: unit ``i`` is the file ``paths[i]``, listed with
    ``sizes[i]`` bytes (``PipeItems.unit(i)`` gives the same as a PipeItem)."""

    paths: Sequence[str]
    sizes: Sequence[int]


class PipeItems:
    """The per-epoch sequence of items of one channel on one host.

    ``count`` units, unit ``i`` expanding to the items ``expand(i)``; build with
    ``from_source`` or ``from_augmented_manifest``. ``local_files``, when set, describes the
    units without a PipeItem each (a LocalSource's objects): the Pipe feeder sends thousands
    of small files a second, and making an object per file is a good part of that work.
    """

    def __init__(
        self,
        count: int,
        expand: Callable[[int], Sequence[PipeItem]],
        *,
        shuffle_seed: int | None = None,
        shard: Shard | None = None,
        local_files: LocalFiles | None = None,
    ) -> None:
        self._count = count
        self._expand = expand
        self.shuffle_seed = shuffle_seed
        self.shard = shard
        self.local_files = local_files

    @classmethod
    def from_source(
        cls,
        source: Source,
        entries: Sequence[Entry],
        *,
        shuffle_seed: int | None = None,
        shard: Shard | None = None,
    ) -> PipeItems:
        """One item per entry (entries in key order, as ``Source.entries()`` lists them)."""
        entries = list(entries)
        local = isinstance(source, LocalSource)  # its entries' locations are file paths

        def expand(index: int) -> Sequence[PipeItem]:
            entry = entries[index]
            opener = functools.partial(source.open, entry)
            path = entry.location if local else None
            return (PipeItem(entry.relative_path, opener, entry.size, path=path),)

        files = None
        if local:
            files = LocalFiles([e.location for e in entries], [e.size for e in entries])
        return cls(len(entries), expand, shuffle_seed=shuffle_seed, shard=shard, local_files=files)

    @classmethod
    def from_augmented_manifest(
        cls,
        manifest_uri: str,
        attribute_names: Sequence[str],
        *,
        shuffle_seed: int | None = None,
        shard: Shard | None = None,
        settings: S3Settings | None = None,
    ) -> PipeItems:
        """One item per attribute per line; lines are the units. Raises SourceError.

        ``settings`` reach S3 for the manifest and its -ref objects (None: the environment)."""
        names = tuple(attribute_names)
        if not names:
            raise SourceError(f"{manifest_uri}: AugmentedManifestFile needs AttributeNames")
        lines = _read_manifest(manifest_uri, names, settings)

        def expand(index: int) -> Sequence[PipeItem]:
            where = f"{manifest_uri} line {lines[index][0]}"
            return _line_items(where, names, lines[index][1], settings)

        return cls(len(lines), expand, shuffle_seed=shuffle_seed, shard=shard)

    def __len__(self) -> int:
        """Number of units (objects or manifest lines) before sharding."""
        return self._count

    def order(self, epoch: int) -> list[int]:
        return epoch_order(self._count, epoch, self.shuffle_seed, self.shard)

    def unit(self, index: int) -> Sequence[PipeItem]:
        """The items of unit ``index`` (0-based, before shuffling and sharding)."""
        return self._expand(index)

    def epoch(self, epoch: int) -> Iterator[PipeItem]:
        """The items of ``epoch``, in the order they are sent."""
        for index in self.order(epoch):
            yield from self._expand(index)


# A manifest line as kept in memory: its 1-based line number, then per attribute the inline
# bytes or (for -ref attributes) the URI.
_Line = tuple[int, tuple[bytes | str, ...]]


def _read_manifest(
    uri: str, names: tuple[str, ...], settings: S3Settings | None = None
) -> list[_Line]:
    lines: list[_Line] = []
    with open_uri(uri, settings) as stream:
        for number, raw in enumerate(iter_lines(stream), start=1):
            if raw.strip():
                lines.append((number, _parse_line(f"{uri} line {number}", raw, names)))
    return lines


def _parse_line(where: str, raw: bytes, names: tuple[str, ...]) -> tuple[bytes | str, ...]:
    try:
        record = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise SourceError(f"{where}: not a JSON object ({exc})") from exc
    if not isinstance(record, dict):
        raise SourceError(f"{where}: not a JSON object")
    values: list[bytes | str] = []
    for name in names:
        if name not in record:
            raise SourceError(f"{where}: no attribute {name!r} (AttributeNames asks for it)")
        values.append(_attribute_value(where, name, record[name]))
    return tuple(values)


def _attribute_value(where: str, name: str, value: object) -> bytes | str:
    if name.endswith(REF_SUFFIX):
        if not isinstance(value, str) or not value:
            raise SourceError(f"{where}: attribute {name!r} must hold a URI string")
        return value
    return encode_inline_value(value)


def encode_inline_value(value: object) -> bytes:
    """The bytes sent for a non-``-ref`` attribute value (see the module docstring)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _line_items(
    where: str,
    names: tuple[str, ...],
    values: tuple[bytes | str, ...],
    settings: S3Settings | None = None,
) -> tuple[PipeItem, ...]:
    items = []
    for name, value in zip(names, values, strict=True):
        label = f"{where} attribute {name!r}"
        if isinstance(value, bytes):
            opener = functools.partial(io.BytesIO, value)
            items.append(PipeItem(label, opener, len(value), inline=True))
        else:
            ref = PipeItem(
                f"{label} ({value})",
                functools.partial(open_uri, value, settings),
                None,
                path=_local_file(value),
            )
            items.append(ref)
    return tuple(items)


def _local_file(uri: str) -> str | None:
    """The path of a -ref URI naming a local file (None for S3, or a URI open_uri refuses)."""
    if not is_local_uri(uri):
        return None
    try:
        return str(local_path(uri))
    except SourceError:
        return None  # open_uri reports it when the item is sent


def iter_chunks(stream: IO[bytes], size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The stream's bytes in pieces of at most ``size`` (short reads are fine)."""
    while chunk := stream.read(size):
        yield chunk


def iter_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Lines (without b'\\n') of a stream, read in chunks."""
    pending = b""
    for chunk in iter_chunks(stream):
        *complete, pending = (pending + chunk).split(b"\n")
        yield from complete
    if pending:
        yield pending


def gunzip(chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
    """Decompress gzip data (one or more members) given in chunks. Raises SourceError."""
    decompressor = zlib.decompressobj(_GZIP_WBITS)
    started = False  # the current decompressor has consumed input
    try:
        for chunk in chunks:
            data = chunk
            while data:
                if decompressor.eof:  # a member ended: skip zero padding, start the next one
                    data = data.lstrip(b"\0")
                    if not data:
                        break
                    decompressor = zlib.decompressobj(_GZIP_WBITS)
                started = True
                data = yield from _inflate(decompressor, data)
    except zlib.error as exc:
        raise SourceError(f"{name}: not valid gzip data ({exc}); check CompressionType") from exc
    if started and not decompressor.eof:
        raise SourceError(f"{name}: gzip data ends in the middle of a member (truncated?)")


def _inflate(decompressor: zlib._Decompress, data: bytes) -> Generator[bytes, None, bytes]:
    """Feed ``data``; yield output in bounded steps; return the bytes after a member's end."""
    while True:
        out = decompressor.decompress(data, CHUNK_SIZE)
        if out:
            yield out
        if decompressor.eof:
            return decompressor.unused_data
        data = decompressor.unconsumed_tail
        if not data and len(out) < CHUNK_SIZE:  # a full step may leave output pending
            return b""


def known_length(stream: IO[bytes]) -> int | None:
    """Bytes left in a seekable stream (a local file), else None."""
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(here)
    except (OSError, ValueError):
        return None
    return end - here


def regular_file(stream: BinaryIO) -> tuple[int, int, int] | None:
    """(fd, position, file size) of a stream that is a plain file object (``open(path, "rb")``)
    over a regular file, else None (S3 bodies; wrappers that transform what they read)."""
    if not isinstance(getattr(stream, "raw", stream), io.FileIO):
        return None
    try:
        fd = stream.fileno()
        info = os.fstat(fd)
        position = stream.tell()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return fd, position, info.st_size
