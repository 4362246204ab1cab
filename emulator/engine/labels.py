"""The labels every container and network of the emulator carries, and how resources are named.

The job label lets ``prune`` and the tests find a job's resources; the pid label says which
emulator process owns them, so that ``prune`` removes only those of processes that are gone,
even after a crash.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

LABEL_JOB = "sagemaker-emulator.run.job"
LABEL_HOST = "sagemaker-emulator.host"
LABEL_PID = "sagemaker-emulator.pid"
# Marks a helper container of the job: removing root-owned files, reading them (archive.py).
LABEL_CLEANUP = "sagemaker-emulator.cleanup"
# A host container of a job run with --keep (the value: the job's work dir). It outlives its
# emulator: only `emulator rm` and `emulator prune --kept` remove it (engine/kept.py).
LABEL_KEPT = "sagemaker-emulator.kept"
# A post-mortem shell's container (`emulator shell`), removed when the shell exits.
LABEL_SHELL = "sagemaker-emulator.shell"


def job_labels(job: str) -> dict[str, str]:
    """The labels of every resource of ``job``, made by this process."""
    return {LABEL_JOB: job, LABEL_PID: str(os.getpid())}


def host_labels(job: str, host: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The labels of one host's container: the job's, the host's, then the plan's own."""
    return {**job_labels(job), LABEL_HOST: host, **extra}


def owner_pid(labels: Mapping[str, str]) -> int | None:
    """The pid of the emulator that made a resource, None when its labels name none."""
    pid = labels.get(LABEL_PID, "")
    return int(pid) if pid.isdigit() else None


def listed_name(info: Mapping[str, Any]) -> str:
    """The name in a low-level container or network listing."""
    names = info.get("Names") or [info.get("Name") or info["Id"][:12]]
    return str(names[0]).lstrip("/")
