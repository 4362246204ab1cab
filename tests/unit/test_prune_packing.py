"""A SIGKILL of the emulator while it packs the model leaves a half-written archive in the
output folder; ``emulator prune`` removes it, and nothing else (issue 15, defect 5).

The emulator's temporaries are named ``.packing-<pid>-<hex>``, ``.replacing-<pid>-<hex>`` and
``.partial-<pid>-<hex>``: prune removes those whose pid is dead, in the folders a dead job's
work dir noted (its output folder, as resolved when it ran) and in the absolute local output
and checkpoint folders of the store's dead jobs. A user's file (any other name, or a name of
that form with the wrong type) and a live emulator's temporaries are never touched.
"""

from __future__ import annotations

import os
from pathlib import Path

from emulator.finish.publish import (
    TEMPORARIES_NOTE,
    WORK_DIR_OWNER_FILE,
    noted_folders,
    publish_artifacts,
)
from emulator.request.validation import parse_request
from emulator.run.workdir import OWNER_FILE, claim
from emulator.storage.local_folder import (
    remove_dead_temporaries,
    temporary_name,
    temporary_owner,
)
from tests.fixtures.jobs import probe_request
from tests.fixtures.processes import HEX, tree


def make(root: Path, files: dict[str, bytes | None]) -> None:
    for name, content in files.items():
        path = root / name
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)


def test_temporary_names_carry_the_pid_of_their_maker() -> None:
    for kind in ("packing", "replacing", "partial"):
        name = temporary_name(kind)
        assert name.startswith(f".{kind}-{os.getpid()}-")
        assert temporary_owner(name) == os.getpid()
    for other in (".packing-notes", ".packing-12-xyz", ".partial-0-" + HEX, "packing-1-" + HEX):
        assert temporary_owner(other) is None


def test_only_dead_temporaries_of_the_right_type_are_removed(
    tmp_path: Path, dead_pid: int, live_pid: int
) -> None:
    ours = {
        f".packing-{dead_pid}-{HEX}/model.tar.gz": b"half",
        f".replacing-{dead_pid}-{HEX}/model/w": b"w",
        f".partial-{dead_pid}-{HEX}": b"half",
        f"model/deeper/.partial-{dead_pid}-{HEX}": b"half",
    }
    kept = {
        "model.tar.gz": b"a user's",
        "model/deeper/w.bin": b"w",
        ".packing-notes": b"a user's",
        f".packing-{dead_pid}-abc": b"not our form",
        f".packing-{dead_pid}-{'f' * 16}": b"a file, not a folder",
        f".partial-{dead_pid}-{'f' * 16}/x": b"a folder, not a file",
        f".packing-{live_pid}-{HEX}/model.tar.gz": b"a live emulator's",
        f".partial-{live_pid}-{HEX}": b"a live emulator's",
    }
    root, reference = tmp_path / "folder", tmp_path / "reference"
    make(root, {**ours, **kept})
    make(reference, kept)
    removed, failed = remove_dead_temporaries(root, lambda pid: pid == live_pid)
    assert failed == []
    assert sorted(p.relative_to(root).as_posix() for p in removed) == [
        f".packing-{dead_pid}-{HEX}",
        f".partial-{dead_pid}-{HEX}",
        f".replacing-{dead_pid}-{HEX}",
        f"model/deeper/.partial-{dead_pid}-{HEX}",
    ]
    assert tree(root) == tree(reference)
    assert remove_dead_temporaries(tmp_path / "missing", lambda pid: False) == ([], [])


def test_publish_notes_the_local_output_folder_in_a_claimed_work_dir(tmp_path: Path) -> None:
    assert WORK_DIR_OWNER_FILE == OWNER_FILE
    work = tmp_path / "work"
    models = [work / "algo-1" / "model"]
    outputs = [work / "algo-1" / "output" / "data"]
    for folder in (*models, *outputs):
        folder.mkdir(parents=True)
    (models[0] / "w").write_bytes(b"w")
    claim(work)
    spec = parse_request(probe_request(tmp_path / "out"))
    publish_artifacts(spec, models, outputs, lambda message: None)
    folder = tmp_path / "out" / spec.name / "output"
    assert noted_folders(work) == [folder]
    assert sorted(os.listdir(folder)) == ["model.tar.gz", "output.tar.gz"]  # no temporaries

    elsewhere = tmp_path / "elsewhere"  # not a work dir: nothing is written beside the trees
    (elsewhere / "algo-1" / "model").mkdir(parents=True)
    publish_artifacts(spec, [elsewhere / "algo-1" / "model"], [], lambda message: None)
    assert not (tmp_path / TEMPORARIES_NOTE).exists()
    assert not (elsewhere / TEMPORARIES_NOTE).exists()
