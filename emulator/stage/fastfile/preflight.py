"""Whether FastFile (FUSE) can work on this host, and if not, why and how to fix it.

Checked before a job starts (``check_fuse_available``), so a missing device, tool, library or
permission is a clear EnvironmentProblem instead of a mount that fails half-way through;
``mount_failure_hint`` explains a mount the kernel refused after all.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
from ctypes.util import find_library
from pathlib import Path

from emulator.errors import EnvironmentProblem

__all__ = ["FUSE_CONF", "FUSE_DEVICE", "check_fuse_available", "mount_failure_hint"]

FUSE_CONF = Path("/etc/fuse.conf")
FUSE_DEVICE = Path("/dev/fuse")


def check_fuse_available() -> None:
    """Raise EnvironmentProblem saying why FastFile cannot work here and how to fix it.

    The device must exist and open read/write for this process (a container without
    ``--device /dev/fuse``, a nodev /dev or a device cgroup all fail here); the fuse3 tools,
    libfuse3 and mfusepy must be installed; a non-root user needs ``user_allow_other``."""
    _check_fuse_device()
    if shutil.which("fusermount3") is None:
        raise EnvironmentProblem(
            "FastFile input mode needs the fuse3 tools (fusermount3 was not found on PATH): "
            "install them, e.g. `apt-get install fuse3`, or use InputMode File"
        )
    if find_library("fuse3") is None:
        raise EnvironmentProblem(
            "FastFile input mode needs libfuse3, which was not found: install it, e.g. "
            "`apt-get install fuse3` (libfuse3-3), or use InputMode File"
        )
    if importlib.util.find_spec("mfusepy") is None:
        raise EnvironmentProblem(
            "FastFile input mode needs the Python package mfusepy: `pip install mfusepy`"
        )
    if os.geteuid() != 0 and not _user_allow_other():
        raise EnvironmentProblem(
            "FastFile mounts use allow_other so the container's user can read them; as a "
            f"non-root user that needs a line `user_allow_other` in {FUSE_CONF} "
            "(as root: echo user_allow_other >> /etc/fuse.conf), or run as root"
        )


def mount_failure_hint(log_text: str) -> str:
    """What to do when the file system process's log says mounting was refused ('' if not)."""
    if "not permitted" in log_text or "Permission denied" in log_text:
        return (
            "\nMounting FUSE file systems is not permitted here: inside a container run it with "
            "`--device /dev/fuse --cap-add SYS_ADMIN` (and no AppArmor mount restriction); as a "
            "non-root user add `user_allow_other` to /etc/fuse.conf"
        )
    return ""


def _check_fuse_device() -> None:
    try:
        mode = FUSE_DEVICE.stat().st_mode
    except FileNotFoundError:
        raise EnvironmentProblem(
            "FastFile input mode needs FUSE, but /dev/fuse does not exist: on a host, load the "
            "module (`modprobe fuse`); inside a container or VM, start it with "
            "`--device /dev/fuse --cap-add SYS_ADMIN`; or use InputMode File"
        ) from None
    if not stat.S_ISCHR(mode):
        raise EnvironmentProblem(
            "FastFile input mode needs FUSE, but /dev/fuse is not a character device: give this "
            "host (or container: `--device /dev/fuse`) the real device, or use InputMode File"
        )
    if not os.access(FUSE_DEVICE, os.R_OK | os.W_OK):
        raise EnvironmentProblem(
            "FastFile input mode needs read/write access to /dev/fuse, which this user does not "
            "have: fix its permissions (usually crw-rw-rw-), run as root, or use InputMode File"
        )
    # access() trusts the permission bits; opening also meets a nodev mount or a container's
    # device cgroup, which refuse the device to root too. Opening alone starts no session.
    try:
        os.close(os.open(FUSE_DEVICE, os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        raise EnvironmentProblem(
            f"FastFile input mode needs FUSE, but opening /dev/fuse failed ({exc.strerror}): "
            "inside a container, start it with `--device /dev/fuse --cap-add SYS_ADMIN`; on a "
            "host, check that /dev is not mounted nodev; or use InputMode File"
        ) from None


def _user_allow_other() -> bool:
    try:
        lines = FUSE_CONF.read_text().splitlines()
    except OSError:
        return False
    return any(line.strip() == "user_allow_other" for line in lines)
