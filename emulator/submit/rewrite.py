"""Which members of a request name this machine, and the request with them rewritten.

Pure functions over a validated request dict (no I/O), so the rewrite is unit-tested alone.
Every location is named by its member path (``InputDataConfig[0].DataSource.S3DataSource.S3Uri``)
so a refusal or a plan line says exactly what to change.

Where things go under the staging prefix ``s3://BUCKET/PREFIX/``:

    data/<sha256 of the tree>/<file>        a local channel (S3Prefix), or a local manifest's
                                            files: content-addressed, so unchanged data is
                                            found there and never uploaded again
    manifests/<sha256 of the body>/<name>   a manifest file (rewritten when its prefix is local)
    checkpoints/<job>/<file>                a local CheckpointConfig.S3Uri's files (the job
                                            writes there too, so it is per job, not by content)
    output, tensorboard, debug, profiler,   local output locations: the job writes them, so
    debug-rules, profiler-rules             they are mapped there (nothing is uploaded)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from emulator.storage.uris import is_local_uri

Kind = Literal["channel", "manifest", "augmented-manifest", "checkpoint", "output"]
Path_ = tuple[str | int, ...]

# Local output locations: where each maps under the staging prefix.
OUTPUT_FOLDERS: dict[str, str] = {
    "OutputDataConfig": "output",
    "TensorBoardOutputConfig": "tensorboard",
    "DebugHookConfig": "debug",
    "ProfilerConfig": "profiler",
}
RULE_FOLDERS: dict[str, str] = {
    "DebugRuleConfigurations": "debug-rules",
    "ProfilerRuleConfigurations": "profiler-rules",
}
_CHANNEL_KINDS: dict[str, Kind] = {
    "S3Prefix": "channel",
    "ManifestFile": "manifest",
    "AugmentedManifestFile": "augmented-manifest",
}


@dataclass(frozen=True)
class LocalLocation:
    """A member of the request that names a local path or file:// URI."""

    path: Path_
    uri: str
    kind: Kind

    @property
    def member(self) -> str:
        return member_text(self.path)


def member_text(path: Path_) -> str:
    """``("InputDataConfig", 0, "ChannelName")`` -> ``InputDataConfig[0].ChannelName``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _local(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value) and is_local_uri(value)


def local_locations(request: dict[str, Any]) -> list[LocalLocation]:
    """Every local location of the request, in request order."""
    found: list[LocalLocation] = []
    for index, channel in enumerate(_list(request.get("InputDataConfig"))):
        source = _dict(_dict(_dict(channel).get("DataSource")).get("S3DataSource"))
        uri = source.get("S3Uri")
        if _local(uri):
            kind = _CHANNEL_KINDS.get(str(source.get("S3DataType")), "channel")
            path: Path_ = ("InputDataConfig", index, "DataSource", "S3DataSource", "S3Uri")
            found.append(LocalLocation(path, uri, kind))
    checkpoint = _dict(request.get("CheckpointConfig")).get("S3Uri")
    if _local(checkpoint):
        found.append(LocalLocation(("CheckpointConfig", "S3Uri"), checkpoint, "checkpoint"))
    for member in OUTPUT_FOLDERS:
        uri = _dict(request.get(member)).get("S3OutputPath")
        if _local(uri):
            found.append(LocalLocation((member, "S3OutputPath"), uri, "output"))
    for member in RULE_FOLDERS:
        for index, rule in enumerate(_list(request.get(member))):
            uri = _dict(rule).get("S3OutputPath")
            if _local(uri):
                found.append(LocalLocation((member, index, "S3OutputPath"), uri, "output"))
    return found


def staging_prefix(staging: str) -> str:
    """``s3://b/p`` and ``s3://b/p/`` both mean the keys ``p/...`` (``s3://b`` the bucket's)."""
    return staging.rstrip("/") + "/"


def data_uri(staging: str, digest: str) -> str:
    return f"{staging_prefix(staging)}data/{digest}/"


def manifest_uri(staging: str, digest: str, name: str) -> str:
    return f"{staging_prefix(staging)}manifests/{digest}/{name}"


def checkpoint_uri(staging: str, job_name: str) -> str:
    return f"{staging_prefix(staging)}checkpoints/{job_name}/"


def output_uri(staging: str, location: LocalLocation) -> str:
    """Where a local output location maps: a folder of its own under the staging prefix."""
    member = location.path[0]
    folder = OUTPUT_FOLDERS.get(str(member)) or RULE_FOLDERS[str(member)]
    if folder in RULE_FOLDERS.values():
        folder = f"{folder}/{location.path[1]}"
    return f"{staging_prefix(staging)}{folder}"


def rewrite(request: dict[str, Any], new_uris: dict[Path_, str]) -> dict[str, Any]:
    """A copy of ``request`` with the member at each path set to its new URI."""
    result = copy.deepcopy(request)
    for path, uri in new_uris.items():
        target: Any = result
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = uri
    return result


def host_count(request: dict[str, Any]) -> int:
    """How many hosts the request asks for (instance groups summed); 1 when it cannot say."""
    resources = _dict(request.get("ResourceConfig"))
    groups = _list(resources.get("InstanceGroups"))
    counts = [_dict(g).get("InstanceCount") for g in groups] or [resources.get("InstanceCount")]
    total = sum(c for c in counts if isinstance(c, int))
    return max(total, 1)
