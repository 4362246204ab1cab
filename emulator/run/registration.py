"""A job's name taken in the store: refused when taken, registered with its request's Tags."""

from __future__ import annotations

from typing import Any

from emulator.errors import JobExists, JobNotFound
from emulator.request.spec import JobSpec
from emulator.state.store import JobStore
from emulator.state.tags import JobTags


def check_name_free(store: JobStore, name: str, replace: bool) -> None:
    """Refuse a name already taken, as ``store.create`` would, before any slow check. With
    --replace the decision (is the old job's process still alive?) is left to
    ``store.create``."""
    if replace:
        return
    try:
        existing = store.get(name)
    except JobNotFound:
        return
    raise JobExists(
        f"Training job {name!r} already exists (status "
        f"{existing.get('TrainingJobStatus')}); job names are unique, as in SageMaker: "
        "choose another --job-name, or pass --replace to discard the old record"
    )


def create_record(store: JobStore, spec: JobSpec, record: dict[str, Any], replace: bool) -> None:
    """Register the job's record (atomically: another emulator may take the name meanwhile)
    and its request's Tags (a replaced job's go)."""
    store.create(record, replace=replace)
    tags = JobTags(store)
    tags.forget(spec.name)
    tags.add(spec.name, {t["Key"]: t.get("Value", "") for t in spec.request.get("Tags", [])})
