"""Docker's multiplexed output split into (stream, chunk) without docker-py's frames_iter:
every payload byte kept, in order, whatever the read boundaries (inside a header, inside a
payload), and read off a real socket in large reads."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from emulator.engine.container import FrameSplitter, MalformedOutput, OutputStream
from emulator.observe.logs import Lines, LogPump

Frames = list[tuple[int, bytes]]


def framed(frames: Frames) -> bytes:
    """The bytes the engine sends for these frames."""
    return b"".join(struct.pack(">BxxxL", stream, len(data)) + data for stream, data in frames)


def merged(frames: Iterable[tuple[int, bytes]]) -> Frames:
    """Consecutive payloads of one stream joined, empty ones left out: what a reader that
    keeps every byte in order must see, however the frames were cut or grouped."""
    out: Frames = []
    for stream, data in frames:
        if not data:
            continue
        if out and out[-1][0] == stream:
            out[-1] = (stream, out[-1][1] + data)
        else:
            out.append((stream, data))
    return out


def split(data: bytes, cuts: Iterable[int]) -> Frames:
    splitter = FrameSplitter()
    out: Frames = []
    start = 0
    for cut in [*cuts, len(data)]:
        out += splitter.feed(data[start:cut])
        start = cut
    return out


FRAMES: Frames = [
    (1, b"step=1 loss=0.5\n"),
    (2, b"warning: slow\n"),
    (1, b""),
    (1, b"step=2 loss=0.25\n"),
    (2, b"\xe2\x82\xac\r\n"),
    (1, b"x" * 300),
]


def test_frames_fed_whole_come_out_joined_by_stream() -> None:
    data = framed(FRAMES)
    assert FrameSplitter().feed(data) == merged(FRAMES)
    assert FrameSplitter().feed(framed([(1, b"a"), (1, b"b"), (2, b"c"), (1, b"d")])) == [
        (1, b"ab"),
        (2, b"c"),
        (1, b"d"),
    ]


def test_a_cut_at_every_position_keeps_every_byte() -> None:
    data = framed(FRAMES)
    for cut in range(len(data) + 1):
        assert merged(split(data, [cut])) == merged(FRAMES), cut


def test_a_header_cut_in_three_at_every_pair_of_positions() -> None:
    frames: Frames = [(1, b"first\n"), (2, b"second\n"), (1, b"third\n")]
    data = framed(frames)
    header = len(framed(frames[:1]))  # where the second header starts
    for first in range(header, header + 9):
        for second in range(first, header + 9):
            assert merged(split(data, [first, second])) == merged(frames), (first, second)


def test_fed_a_byte_at_a_time() -> None:
    data = framed(FRAMES)
    assert merged(split(data, range(1, len(data)))) == merged(FRAMES)


def test_a_large_frame_comes_out_in_pieces_as_it_arrives() -> None:
    payload = random.Random(1).randbytes(5 * 1024 * 1024)
    data = framed([(2, b"before"), (1, payload), (2, b"after")])
    step = 64 * 1024
    splitter = FrameSplitter()
    out: Frames = []
    for start in range(0, len(data), step):
        got = splitter.feed(data[start : start + step])
        assert sum(len(chunk) for _, chunk in got) <= step  # never held back whole
        out += got
    assert merged(out) == [(2, b"before"), (1, payload), (2, b"after")]


def test_empty_frames_give_nothing() -> None:
    assert FrameSplitter().feed(framed([(1, b""), (2, b"")])) == []
    data = framed([(1, b"a"), (2, b""), (1, b""), (1, b"b")])
    assert FrameSplitter().feed(data) == [(1, b"ab")]
    assert FrameSplitter().feed(b"") == []


def test_random_frames_and_random_cuts() -> None:
    rng = random.Random(7)
    for _ in range(200):
        frames: Frames = [
            (rng.choice((1, 2)), rng.randbytes(rng.choice((0, 1, 7, 8, 9, 100, 5000))))
            for _ in range(rng.randint(0, 30))
        ]
        data = framed(frames)
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 12))))
        assert merged(split(data, cuts)) == merged(frames)


def test_a_broken_header_is_a_clear_error() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(framed([(1, b"fine\n")])) == [(1, b"fine\n")]
    with pytest.raises(MalformedOutput, match="not framed as expected"):
        splitter.feed(b"step=1 loss=0.5\n")  # a TTY container's raw output, say


def connected_pair(family: str) -> tuple[socket.socket, socket.socket]:
    """(ours, the engine's end) of a real unix or TCP connection."""
    if family == "unix":
        return socket.socketpair()
    with socket.create_server(("127.0.0.1", 0)) as server:
        theirs = socket.create_connection(server.getsockname())
        ours, _ = server.accept()
    return ours, theirs


def writer(sock: socket.socket, data: bytes, seed: int, pause: float = 0.0) -> None:
    """Send ``data`` in writes of random sizes, pausing once (a quiet container)."""
    rng = random.Random(seed)
    start = 0
    half = len(data) // 2
    while start < len(data):
        size = rng.choice((1, 3, 8, 100, 4096, 70_000))
        if start < half <= start + size and pause:
            time.sleep(pause)
        sock.sendall(data[start : start + size])
        start += size
    sock.close()


@pytest.mark.parametrize(
    ("family", "wrapped"), [("unix", False), ("unix", True), ("tcp", False), ("tcp", True)]
)
def test_the_stream_reads_a_real_socket_to_its_end(family: str, wrapped: bool) -> None:
    rng = random.Random(3)
    frames: Frames = [
        (rng.choice((1, 2)), rng.randbytes(rng.choice((0, 5, 400, 40_000)))) for _ in range(300)
    ]
    ours, theirs = connected_pair(family)
    ours.settimeout(0.05)  # as the client's timeout: a pause longer than it is not the end
    sock = ours.makefile("rb", buffering=0) if wrapped else ours  # docker-py's SocketIO
    thread = threading.Thread(target=writer, args=(theirs, framed(frames), 1, 0.3))
    thread.start()
    stream = OutputStream(sock)
    try:
        assert merged(stream) == merged(frames)
    finally:
        stream.close()  # first: a reader that failed must not leave the writer blocked
        thread.join(10)


def test_a_tty_stream_is_raw_stdout() -> None:
    ours, theirs = socket.socketpair()
    data = b"progress 10%\rprogress 20%\r\nno frames here\n" * 1000
    thread = threading.Thread(target=writer, args=(theirs, data, 2))
    thread.start()
    try:
        assert merged(OutputStream(ours, tty=True)) == [(1, data)]
    finally:
        ours.close()
        thread.join(10)


def test_close_wakes_a_blocked_reader() -> None:
    ours, theirs = socket.socketpair()
    stream = OutputStream(ours.makefile("rb", buffering=0))
    theirs.sendall(framed([(1, b"hello\n")]))
    got: Frames = []
    thread = threading.Thread(target=lambda: got.extend(stream))
    thread.start()
    time.sleep(0.2)  # the reader now waits for more
    stream.close()
    thread.join(5)
    assert not thread.is_alive()
    assert got == [(1, b"hello\n")]
    theirs.close()


def test_the_pump_keeps_every_byte_off_a_socket(tmp_path: Path) -> None:
    lines = [(1 + i % 3 // 2, f"line {i} loss={i}\n".encode()) for i in range(50_000)]
    ours, theirs = socket.socketpair()
    thread = threading.Thread(target=writer, args=(theirs, framed(lines), 4))
    got: dict[int, list[str]] = {1: [], 2: []}

    def consume(batch: Sequence[Lines]) -> None:
        for group in batch:
            got[group.stream] += group.lines

    pump = LogPump(OutputStream(ours), tmp_path / "algo-1.log", {"lines": consume})
    pump.start()
    thread.start()
    pump.finish(stall_seconds=30)
    thread.join()
    assert pump.errors == []
    assert (tmp_path / "algo-1.log").read_bytes() == b"".join(data for _, data in lines)
    for stream in (1, 2):
        wanted = [data.decode().rstrip("\n") for s, data in lines if s == stream]
        assert got[stream] == wanted


@pytest.mark.parametrize("family", ["unix", "tcp"])
def test_a_few_bytes_then_quiet_come_at_once(family: str) -> None:
    """Reads gather what comes in a short while: a line followed by silence (a training step
    of minutes) must still come at once, not wait for more output."""
    ours, theirs = connected_pair(family)
    ours.settimeout(30.0)
    stream = OutputStream(ours)
    got: Frames = []
    arrived = threading.Event()

    def read() -> None:
        for frame in stream:
            got.append(frame)
            arrived.set()

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for step in range(3):
            time.sleep(0.1)  # quiet: the reader waits for output, not inside a read
            arrived.clear()
            theirs.sendall(framed([(1, f"step={step}\n".encode())]))
            assert arrived.wait(2.0), f"step {step} did not come while the stream was quiet"
        theirs.close()
        thread.join(5)
        assert got == [(1, b"step=0\n"), (1, b"step=1\n"), (1, b"step=2\n")]
    finally:
        stream.close()
        theirs.close()
        thread.join(5)
