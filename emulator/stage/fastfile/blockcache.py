"""A bounded, shared block cache with sequential read-ahead over a ``Source``.

FastFile reads are served from fixed-size blocks (8 MiB by default) fetched with
``Source.read_range`` (one ranged GET per block for S3). The cache:

- keeps blocks in LRU order within a byte budget; blocks a sequential reader has moved well
  past are demoted so they leave first (the kernel page cache keeps re-reads cheap anyway);
- fetches each block once, however many readers want it at the same time (later readers wait
  on the first reader's fetch);
- prefetches the next blocks in a small thread pool when a handle reads sequentially, the
  window doubling from one block up to ``readahead_blocks`` so a reader that only peeks at the
  start of a file costs at most one extra block;
- for a file opened in listing order (a reader going through the channel file after file),
  lets the window run on past the end of the file into the first blocks of the next ones, so
  the fetches never pause at a file boundary (a reader that stops before the end of each file
  never gets there).

It is independent of FUSE so it can be tested in-process.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass

from emulator.errors import SourceError
from emulator.storage.base import Entry, Source

MiB = 1024 * 1024
DEFAULT_BLOCK_SIZE = 8 * MiB
DEFAULT_CACHE_BYTES = 384 * MiB
# Up to 128 MiB ahead of a sequential reader, 16 fetches in flight: as many ranges as File
# mode downloads at once (EMULATOR_S3_MAX_CONCURRENCY's default), since S3 serves each
# connection at a fraction of what the host can take (~100 MB/s on AWS). Two sequential
# readers' windows fit the default budget with room to spare.
DEFAULT_READAHEAD_BLOCKS = 16
DEFAULT_FETCH_WORKERS = 16
DEMOTE_LAG_BYTES = 8 * MiB  # > the kernel read-ahead window FastFile sets (4 MiB)
# Read-ahead past the end of a file visits at most this many following files (empty ones
# hold no block), so a run of empty files costs nothing per read.
SPILL_FILES = 16

BlockKey = tuple[int, int]  # (file id, block index)


@dataclass
class CacheStats:
    """Counters since the cache was created (cached_* are current values)."""

    fetches: int = 0  # read_range calls made
    fetched_bytes: int = 0
    prefetches: int = 0  # fetches started by read-ahead
    hits: int = 0  # block found in the cache
    joins: int = 0  # block was being fetched already: waited for that fetch
    waited_us: int = 0  # time readers spent waiting for blocks being fetched
    evictions: int = 0
    cached_blocks: int = 0
    cached_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class BlockCache:
    """Blocks of the entries of one Source, fetched on demand, kept within a byte budget."""

    def __init__(
        self,
        source: Source,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        capacity_bytes: int = DEFAULT_CACHE_BYTES,
        readahead_blocks: int = DEFAULT_READAHEAD_BLOCKS,
        fetch_workers: int = DEFAULT_FETCH_WORKERS,
    ) -> None:
        if block_size <= 0:
            raise ValueError("block_size must be positive")
        if capacity_bytes < 2 * block_size:
            raise ValueError(
                f"cache budget {capacity_bytes} bytes is below two blocks of {block_size}"
            )
        self.source = source
        self.block_size = block_size
        self.capacity_bytes = capacity_bytes
        # Read-ahead never takes more than half the budget, so prefetched blocks are not
        # evicted by other prefetched blocks before anyone reads them.
        self.readahead_blocks = max(0, min(readahead_blocks, capacity_bytes // block_size // 2))
        self._blocks: OrderedDict[BlockKey, bytes] = OrderedDict()
        self._pending: dict[BlockKey, Future[bytes]] = {}
        self._lock = threading.Lock()
        self._stats = CacheStats()
        self._pool = ThreadPoolExecutor(max_workers=max(1, fetch_workers), thread_name_prefix="ra")
        # The file a sequential reader's window last ran on into (``ReadHandle``).
        self.streaming_into = -1

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(**asdict(self._stats))

    def close(self) -> None:
        """Stop read-ahead; fetches in flight are abandoned (their waiters still get them)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def block_count(self, entry: Entry) -> int:
        return -(-entry.size // self.block_size)

    def block(self, file_id: int, entry: Entry, index: int) -> bytes:
        """Block ``index`` of the entry, from the cache or fetched now (once for all callers)."""
        key = (file_id, index)
        with self._lock:
            cached = self._blocks.get(key)
            if cached is not None:
                self._blocks.move_to_end(key)
                self._stats.hits += 1
                return cached
            future = self._pending.get(key)
            owner = future is None
            if future is None:
                future = self._pending[key] = Future()
            else:
                self._stats.joins += 1
        started = time.monotonic_ns()
        if owner:
            self._fill(key, entry, future)
        try:
            return future.result()
        finally:
            waited = (time.monotonic_ns() - started) // 1000
            with self._lock:
                self._stats.waited_us += waited

    def prefetch(self, file_id: int, entry: Entry, index: int) -> None:
        """Start fetching a block in the background unless it is cached or on its way."""
        key = (file_id, index)
        with self._lock:
            if key in self._blocks or key in self._pending:
                return
            future: Future[bytes] = Future()
            self._pending[key] = future
            self._stats.prefetches += 1
        try:
            self._pool.submit(self._fill, key, entry, future)
        except RuntimeError:  # pool shut down: the FS is going away
            with self._lock:
                self._pending.pop(key, None)
            future.cancel()

    def demote(self, file_id: int, index: int) -> None:
        """Mark a block as the next to evict (a sequential reader has moved past it)."""
        key = (file_id, index)
        with self._lock:
            if key in self._blocks:
                self._blocks.move_to_end(key, last=False)

    def _fill(self, key: BlockKey, entry: Entry, future: Future[bytes]) -> None:
        try:
            data = self._fetch(entry, key[1])
        except BaseException as exc:
            # Failures are not cached: the next read tries again.
            with self._lock:
                self._pending.pop(key, None)
            future.set_exception(exc)
            return
        with self._lock:
            self._pending.pop(key, None)
            self._store(key, data)
        future.set_result(data)

    def _fetch(self, entry: Entry, index: int) -> bytes:
        start = index * self.block_size
        length = min(self.block_size, entry.size - start)
        data = self.source.read_range(entry, start, length)
        with self._lock:
            self._stats.fetches += 1
            self._stats.fetched_bytes += len(data)
        if len(data) != length:
            raise SourceError(
                f"{entry.location}: read {len(data)} bytes at offset {start}, expected {length} "
                f"(object size {entry.size} when listed); was it changed during the job?"
            )
        return data

    def _store(self, key: BlockKey, data: bytes) -> None:
        """Insert as most recently used and evict from the LRU end down to the budget."""
        self._blocks[key] = data
        self._stats.cached_blocks += 1
        self._stats.cached_bytes += len(data)
        while self._stats.cached_bytes > self.capacity_bytes and len(self._blocks) > 1:
            _, evicted = self._blocks.popitem(last=False)
            self._stats.cached_blocks -= 1
            self._stats.cached_bytes -= len(evicted)
            self._stats.evictions += 1


class ReadHandle:
    """One open file: serves reads from the cache and drives read-ahead for it.

    A read is sequential when it enters the block after the furthest block read so far
    (reads within known blocks may arrive out of order: the kernel sends read-ahead requests
    in parallel). Forward jumps reset the window; going back far restarts the detection.

    ``following`` (the channel's entries, this one at ``file_id``), when given, lets the
    window run on into the next files once it reaches the end of this one.
    """

    def __init__(
        self,
        cache: BlockCache,
        file_id: int,
        entry: Entry,
        following: Sequence[Entry] | None = None,
    ) -> None:
        self.cache = cache
        self.file_id = file_id
        self.entry = entry
        self.following = following
        self._lock = threading.Lock()
        self._furthest = -1  # furthest block read so far
        self._window = 0  # current read-ahead window, in blocks
        if following is not None and cache.streaming_into == file_id:
            # The previous file was read to its end and its window ran on into this one: a
            # reader streaming through the channel, whose window need not grow again.
            self._window = cache.readahead_blocks

    def read(self, offset: int, size: int) -> bytes:
        pieces = self.pieces(offset, size)
        if len(pieces) == 1 and pieces[0][1:] == (0, len(pieces[0][0])):
            return pieces[0][0]
        return b"".join(block[start:end] for block, start, end in pieces)

    def pieces(self, offset: int, size: int) -> list[tuple[bytes, int, int]]:
        """The bytes at ``offset`` as ``(block, start, end)`` slices of cached blocks, in
        order, without copying them (FastFile copies each piece once, into the kernel's
        buffer). Empty at or past the end of the entry."""
        size = min(size, self.entry.size - offset)
        if size <= 0 or offset < 0:
            return []
        block_size = self.cache.block_size
        first, last = offset // block_size, (offset + size - 1) // block_size
        # Start read-ahead before waiting for this block, so both fetches overlap.
        self._read_ahead(first, last)
        pieces = []
        for index in range(first, last + 1):
            block = self.cache.block(self.file_id, self.entry, index)
            start = max(offset - index * block_size, 0)
            end = min(offset + size - index * block_size, len(block))
            pieces.append((block, start, end))
        return pieces

    def _read_ahead(self, first: int, last: int) -> None:
        with self._lock:
            furthest = self._furthest
            if first < furthest - 1:  # went back: a new pass over the file
                self._furthest, self._window = last, 0
                return
            if last <= furthest:
                return
            self._furthest = last
            if first > furthest + 1:  # jumped forward: random access
                self._window = 0
                return
            limit = self.cache.readahead_blocks
            self._window = min(max(1, self._window * 2), limit)
            window = self._window
        # Blocks well behind the reader go first. Not the ones just left: the kernel sends its
        # read-ahead requests in parallel, so some arrive late and out of order.
        behind = furthest - max(1, -(-DEMOTE_LAG_BYTES // self.cache.block_size))
        if behind >= 0:
            self.cache.demote(self.file_id, behind)
        count = self.cache.block_count(self.entry)
        for index in range(last + 1, min(last + 1 + window, count)):
            self.cache.prefetch(self.file_id, self.entry, index)
        if self.following is not None and last + 1 + window > count:
            self._spill(last + 1 + window - count)

    def _spill(self, blocks: int) -> None:
        """Prefetch the first ``blocks`` blocks of the files after this one, in order."""
        following = self.following
        assert following is not None
        self.cache.streaming_into = self.file_id + 1
        for file_id in range(self.file_id + 1, min(self.file_id + 1 + SPILL_FILES, len(following))):
            entry = following[file_id]
            take = min(blocks, self.cache.block_count(entry))
            for index in range(take):
                self.cache.prefetch(file_id, entry, index)
            blocks -= take
            if blocks <= 0:
                return
