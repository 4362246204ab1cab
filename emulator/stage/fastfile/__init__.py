"""FastFile input mode: a channel's objects as a read-only FUSE mount, fetched on demand.

``preflight`` tells whether FUSE works here, ``mount`` (``FastFileMount``) runs the file system
process ``server`` for a job, ``protocol`` is what the two say to each other, ``blockcache``
holds the fetched bytes, and ``mounts`` reads the mount table (also for ``emulator prune``).
"""

from __future__ import annotations

from emulator.stage.fastfile.mount import FastFileMount
from emulator.stage.fastfile.preflight import check_fuse_available

__all__ = ["FastFileMount", "check_fuse_available"]
