"""The mount table, and telling FastFile mounts and their file system processes apart.

Shared by the FastFile mounts (``emulator.stage.fastfile.mount``) and ``emulator prune``. Reads
/proc only and runs ``fusermount3``/``umount``; it never opens a file on a mount (a hung FUSE
server would hang the caller).

FastFile mounts are tagged in /proc/self/mountinfo: fstype ``fuse.emulator-fastfile``
(``FSTYPE``) and source ``emulator-fastfile:<pid>:<label>``, where ``<pid>`` is the file
system process serving the mount. That process's command line names the module
``emulator.stage.fastfile.server`` (``SERVER_MODULE``), which tells it from an unrelated
process that got the pid after the server died.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from emulator.errors import EnvironmentProblem

__all__ = [
    "FSNAME",
    "FSTYPE",
    "MOUNTINFO",
    "SERVER_MODULE",
    "MountRecord",
    "fastfile_mounts",
    "find_stale_mounts",
    "force_unmount",
    "is_mounted",
    "mount_at",
    "read_mounts",
    "server_alive",
    "server_pid",
    "unmount",
]

FSNAME = "emulator-fastfile"
FSTYPE = f"fuse.{FSNAME}"
MOUNTINFO = Path("/proc/self/mountinfo")
# Found in the command line of every FastFile file system process.
SERVER_MODULE = "emulator.stage.fastfile.server"


@dataclass(frozen=True)
class MountRecord:
    """One line of /proc/self/mountinfo (the fields used here)."""

    mountpoint: Path
    fstype: str
    source: str


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def read_mounts(mountinfo: Path = MOUNTINFO) -> list[MountRecord]:
    """Every mount of this process's mount namespace, in table order (a later mount at the
    same point stacks on an earlier one); fields unescaped."""
    records = []
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            fields = line.split()
            sep = fields.index("-")  # optional fields end with a lone "-"
            records.append(
                MountRecord(
                    Path(_unescape(fields[4])),
                    _unescape(fields[sep + 1]),
                    _unescape(fields[sep + 2]),
                )
            )
    return records


def mount_at(path: Path) -> MountRecord | None:
    """The top-most mount at exactly ``path`` (later lines stack on earlier ones)."""
    real = Path(os.path.realpath(path))
    found = None
    for record in read_mounts():
        if record.mountpoint == real:
            found = record
    return found


def is_mounted(path: Path) -> bool:
    """Whether a FUSE file system is mounted at ``path`` (works for dead servers too, where
    os.path.ismount fails with ENOTCONN)."""
    record = mount_at(path)
    return record is not None and record.fstype.startswith("fuse")


def fastfile_mounts(root: Path) -> list[MountRecord]:
    """The FastFile mounts at or below ``root`` (symlinks resolved), in table order."""
    real_root = Path(os.path.realpath(root))
    return [
        record
        for record in read_mounts()
        if record.fstype == FSTYPE
        and (record.mountpoint == real_root or real_root in record.mountpoint.parents)
    ]


def server_pid(source: str) -> int | None:
    """The pid in a mount source ``<fsname>:<pid>:<label>`` when that process's command line
    is a FastFile file system process's, else None (no pid, or the process is gone).

    A zombie has an empty command line, so it is None too, unless it died after the read;
    callers that must not act on a dead process check its state themselves."""
    parts = source.split(":", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    pid = int(parts[1])
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if SERVER_MODULE.encode() in cmdline else None


def server_alive(source: str) -> bool:
    """Whether ``source`` is a FastFile mount source (``emulator-fastfile:<pid>:<label>``)
    whose file system process still runs."""
    return source.startswith(f"{FSNAME}:") and server_pid(source) is not None


def find_stale_mounts(root: Path) -> list[Path]:
    """FastFile mounts at or below ``root`` whose file system process is gone (killed,
    crashed): reading them fails with ENOTCONN until ``force_unmount``. Deepest first.

    Never touches the mounts themselves (a hung server would hang the caller)."""
    stale = [
        record.mountpoint for record in fastfile_mounts(root) if not server_alive(record.source)
    ]
    return sorted(set(stale), key=lambda path: len(path.parts), reverse=True)


def force_unmount(path: Path) -> None:
    """Detach the FUSE mount at ``path`` now (lazy unmount), even if busy or dead.

    No-op when nothing FUSE is mounted there; raises EnvironmentProblem if it stays mounted."""
    if not is_mounted(path):
        return
    for command in (["fusermount3", "-u", "-z", str(path)], ["umount", "-l", str(path)]):
        with contextlib.suppress(OSError):
            subprocess.run(command, capture_output=True, check=False, timeout=30)
        if not is_mounted(path):
            return
    raise EnvironmentProblem(
        f"cannot unmount the FUSE file system at {path}: run `fusermount3 -u -z {path}` "
        "(or `umount -l` as root)"
    )


def unmount(path: Path) -> None:
    """Unmount cleanly; if something still uses the mount, detach it lazily
    (``force_unmount``). No-op when nothing FUSE is mounted at ``path``."""
    if not is_mounted(path):
        return
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(["fusermount3", "-u", "-q", str(path)], capture_output=True, timeout=30)
    if is_mounted(path):
        force_unmount(path)
