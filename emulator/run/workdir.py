"""The job's work dir: the hosts' /opt/ml trees, staged data, FIFOs and mount points.

A work dir records the pid of the emulator that made it (``claim``), so ``emulator prune`` can
tell a dead job's dir from a live one's, and the job's image, with which root-owned files a
root training container wrote there are removed (``remove_work_dir``).

Work dirs go in ``RunOptions.work_root``, else in the temp dir $TMPDIR names (then $TEMP,
$TMP, as Python's tempfile reads them), else in the system's (/tmp). A place asked for that
cannot hold them (missing, not a directory, not writable) is refused before the job starts
(``check_work_root``, EnvironmentProblem: exit 2), never replaced by another silently, as
tempfile would.

A job run with --keep marks its work dir kept (``mark_kept``: a ``kept`` file naming the job
and its state dir): it is never an orphan, whatever became of its emulator; ``emulator rm``
and ``emulator prune --kept`` remove it (cleanup/kept.py).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator.engine import DockerEngine
from emulator.errors import EmulatorError, EnvironmentProblem
from emulator.state.store import process_alive

WORK_DIR_PREFIX = "sagemaker-emulator-"
OWNER_FILE = "owner.pid"
IMAGE_FILE = "image"  # the job's TrainingImage, for removing root-owned files
KEPT_FILE = "kept"  # {"job": ..., "home": ...}: the job was run with --keep
# A work dir without an owner file is a leftover only once it is older than this: its maker
# may be between creating it and writing the file.
UNOWNED_GRACE_SECONDS = 60.0


TEMP_VARIABLES = ("TMPDIR", "TEMP", "TMP")  # in the order Python's tempfile reads them


def make_work_dir(job: str, root: Path | None = None) -> Path:
    """A new work dir for ``job`` under ``root`` (default: the temp dir; ``check_work_root``);
    ``claim`` it next."""
    base = check_work_root(root)
    try:
        return Path(tempfile.mkdtemp(prefix=f"{WORK_DIR_PREFIX}{job}-", dir=base))
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot create the job's work dir in {base}: {exc.strerror or exc}; free some "
            "space or choose another place for it"
        ) from exc


def check_work_root(root: Path | None = None) -> Path:
    """Where work dirs go: ``root``, else the temp dir the environment names, else the
    system's. Raises EnvironmentProblem when a place asked for cannot hold them."""
    if root is not None:
        _check_usable(
            Path(root).absolute(),
            f"the work root {root} (RunOptions.work_root)",
            "create it or choose a directory you can write",
        )
        return Path(root)
    for variable in TEMP_VARIABLES:
        value = os.environ.get(variable)
        if value:  # tempfile skips an empty one too
            path = Path(value).absolute()
            _check_usable(
                path,
                f"{variable}={value}",
                f"create it (mkdir -p {path}) or make it writable, or point {variable} at "
                f"another directory, or unset it to use /tmp",
            )
            return path
    return Path(tempfile.gettempdir())


def _check_usable(path: Path, what: str, fix: str) -> None:
    """Refuse ``path`` unless it is a directory this process can create entries in."""
    try:
        info = path.stat()
    except FileNotFoundError:
        reason = "does not exist"
    except NotADirectoryError:
        reason = "is not a directory (a part of its path is a file)"
    except OSError as exc:
        reason = f"cannot be reached ({exc.strerror or exc})"
    else:
        if not stat.S_ISDIR(info.st_mode):
            reason = "is not a directory"
        elif not os.access(path, os.W_OK | os.X_OK, effective_ids=_EFFECTIVE_IDS):
            reason = "is not writable by the user running the emulator"
        else:
            return
    raise EnvironmentProblem(
        f"{what} {reason}: the job's work dir goes there (the emulator never falls back to "
        f"another place silently); {fix}"
    )


# os.access checks the real user by default; the effective one creates the files.
_EFFECTIVE_IDS = os.access in os.supports_effective_ids


def work_dirs(root: Path | None = None) -> list[Path]:
    """Every work dir under ``root`` (default: the temp dir), live or not."""
    base = root or Path(tempfile.gettempdir())
    return [path for path in sorted(base.glob(f"{WORK_DIR_PREFIX}*")) if path.is_dir()]


def orphaned(work_dir: Path) -> bool:
    """Whether ``work_dir`` is a leftover: its emulator is gone, and it is not kept."""
    return kept_marker(work_dir) is None and owner_gone(work_dir)


def owner_gone(work_dir: Path) -> bool:
    """Whether the emulator that made ``work_dir`` is gone."""
    try:
        pid = int((work_dir / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return time.time() - work_dir.stat().st_mtime > UNOWNED_GRACE_SECONDS
    return not process_alive(pid)


def claim(work_dir: Path, image: str | None = None) -> None:
    """Mark ``work_dir`` as this process's, for ``prune``; record the job's image, with which
    ``prune`` removes root-owned files."""
    if image is not None:
        (work_dir / IMAGE_FILE).write_text(image)
    (work_dir / OWNER_FILE).write_text(str(os.getpid()))


def mark_kept(work_dir: Path, job: str, home: Path) -> None:
    """Mark ``work_dir`` as kept (--keep): ``prune`` leaves it, ``rm``/``prune --kept`` go."""
    marker = {"job": job, "home": str(home)}
    (work_dir / KEPT_FILE).write_text(json.dumps(marker) + "\n")


def kept_marker(work_dir: Path) -> dict[str, str] | None:
    """The kept marker of ``work_dir`` ({"job", "home"}), None when it is not kept. A marker
    that cannot be read still marks it kept: nothing kept is removed by mistake."""
    path = work_dir / KEPT_FILE
    try:
        marker = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {} if path.exists() or path.is_symlink() else None
    return {str(k): str(v) for k, v in marker.items()} if isinstance(marker, dict) else {}


def remove_work_dir(
    work_dir: Path,
    *,
    image: str | None = None,
    job: str | None = None,
    notice: Callable[[str], None] | None = None,
    engine: DockerEngine | None = None,
) -> bool:
    """Remove ``work_dir``; whether it is gone.

    What the user running the emulator cannot delete (root-owned files a root container
    wrote) is removed by a root container of ``image`` (default: the one ``claim`` recorded)
    labelled with ``job`` (default: from the dir's name), through ``engine`` (default: a new
    one), then the removal is retried. What still remains is named in a ``notice`` (default:
    on stderr) with how to remove it."""
    image = image or _recorded_image(work_dir)
    job = job or work_dir.name.removeprefix(WORK_DIR_PREFIX).rpartition("-")[0] or "prune"
    denied: list[BaseException] = []

    def note(_function: Any, _path: Any, exc_info: Any) -> None:
        if isinstance(exc_info[1], OSError) and exc_info[1].errno in (errno.EACCES, errno.EPERM):
            denied.append(exc_info[1])

    shutil.rmtree(work_dir, onerror=note)  # other failures: what remains is checked below
    if not work_dir.exists():
        return True
    if image is not None and (denied or os.geteuid() != 0):
        _remove_as_root(image, work_dir, job, engine)
        shutil.rmtree(work_dir, ignore_errors=True)
        if not work_dir.exists():
            return True
    (notice or _to_stderr)(
        f"Could not remove the work dir {work_dir} (files a root container wrote there are "
        f"owned by root); remove it with `sudo rm -rf {work_dir}`"
    )
    return False


def _recorded_image(work_dir: Path) -> str | None:
    try:
        return (work_dir / IMAGE_FILE).read_text().strip() or None
    except OSError:
        return None


def _remove_as_root(image: str, work_dir: Path, job: str, engine: DockerEngine | None) -> None:
    try:
        if engine is not None:
            engine.remove_as_root(image, work_dir, job)
            return
        own = DockerEngine()
        try:
            own.remove_as_root(image, work_dir, job)
        finally:
            own.close()
    except EmulatorError:
        pass  # no engine: the notice says what is left


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)
