"""Big local files go to the channel's splice helper process: every byte in order (two requests
in flight), RecordIO framing around them, a reader that pauses between reads (the helper stops
waiting for room awake and sleeps), an early close, and stop() while the reader stalls."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from emulator.stage.pipe.feeder import PipeChannel
from emulator.stage.pipe.recordio import framed_size
from emulator.stage.pipe.splicer import REQUEST, SPIN_BUDGET
from emulator.stage.pipe.writer import HELPER_MIN
from tests.fixtures.pipe import (
    decode,
    in_key_order,
    items_of,
    make_local_source,
    read_epoch,
    wait_for,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_feeder_thread_left")]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def files() -> dict[str, bytes]:
    return {
        "a-big": os.urandom(REQUEST + HELPER_MIN + 3),  # two requests, the second short
        "b-small": os.urandom(1001),
        "c-big": os.urandom(HELPER_MIN + 5),
    }


@pytest.fixture
def in_process_splices(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes moved by os.splice calls in this process (the helper's are not seen)."""
    moves: list[int] = []
    real_splice = os.splice

    def counting_splice(src: int, dst: int, count: int, **kwargs: Any) -> int:
        moved = real_splice(src, dst, count, **kwargs)
        moves.append(moved)
        return moved

    monkeypatch.setattr(os, "splice", counting_splice)
    return moves


@pytest.mark.parametrize("record_io", [False, True])
def test_big_files_are_spliced_by_the_helper_in_order(
    tmp_path: Path,
    data_dir: Path,
    files: dict[str, bytes],
    in_process_splices: list[int],
    record_io: bool,
) -> None:
    source = make_local_source(tmp_path / "src", files)
    with PipeChannel("t", data_dir, items_of(source), record_io=record_io) as channel:
        for epoch in range(2):
            data = read_epoch(data_dir / f"t_{epoch}")
            if record_io:
                assert decode(data) == [(0, files[name]) for name in sorted(files)]
            else:
                assert data == in_key_order(files)
        wait_for(lambda: channel.stats().epochs_completed == 2)
    assert channel.error is None
    assert in_process_splices == []  # the big files went through the helper
    wire = sum(framed_size(len(d)) if record_io else len(d) for d in files.values())
    assert channel.stats().bytes_written == 2 * wire


def test_a_reader_pausing_between_reads_gets_every_byte_in_order(
    tmp_path: Path, data_dir: Path, files: dict[str, bytes]
) -> None:
    source = make_local_source(tmp_path / "src", files)
    pause = 8 * SPIN_BUDGET  # longer than the helper waits awake: it backs off and sleeps
    with PipeChannel("t", data_dir, items_of(source)) as channel:
        wait_for((data_dir / "t_0").exists)
        pieces = []
        with open(data_dir / "t_0", "rb", buffering=0) as fifo:
            while piece := fifo.read(1024 * 1024):
                pieces.append(piece)
                time.sleep(pause)
        assert b"".join(pieces) == in_key_order(files)
        wait_for(lambda: channel.stats().epochs_completed == 1)
    assert channel.error is None


def test_an_early_close_inside_a_big_file_ends_the_epoch_only(
    tmp_path: Path, data_dir: Path, files: dict[str, bytes]
) -> None:
    source = make_local_source(tmp_path / "src", files)
    with PipeChannel("t", data_dir, items_of(source)) as channel:
        wait_for((data_dir / "t_0").exists)
        with open(data_dir / "t_0", "rb") as fifo:
            assert fifo.read(4096) == files["a-big"][:4096]
        assert read_epoch(data_dir / "t_1") == in_key_order(files)
        wait_for(lambda: channel.stats().epochs_completed == 1)
        assert channel.stats().epochs_closed_early == 1
    assert channel.error is None


def test_stop_while_the_reader_stalls_inside_a_big_file(
    tmp_path: Path, data_dir: Path, files: dict[str, bytes]
) -> None:
    source = make_local_source(tmp_path / "src", files)
    channel = PipeChannel("t", data_dir, items_of(source))
    channel.start()
    try:
        wait_for((data_dir / "t_0").exists)
        with open(data_dir / "t_0", "rb") as fifo:
            assert fifo.read(4096) == files["a-big"][:4096]
            started = time.monotonic()
            channel.stop()  # the feeder waits on the helper, the helper on the full pipe
            assert time.monotonic() - started < 5
    finally:
        channel.stop()
    assert channel.error is None
    assert list(data_dir.iterdir()) == []
