"""The CreateTrainingJob input shape of the botocore model, compiled once into a tree of ``Node``.

The botocore service model is the source of truth. ``schema()`` loads the ``sagemaker`` model
once per process and compiles the input shape of ``CreateTrainingJob`` into a small tree of
``Node`` objects (kind, min/max, enum, pattern, members, ...), so validating a request is a
plain walk over dicts (``emulator.request.walk``): no botocore calls, no per-field code copied
from the model.

Local additions, keyed by shape name: the ``TrainingInstanceType`` enum
(ResourceConfig.InstanceType, InstanceGroups[].InstanceType) also accepts ``local`` and
``local_gpu``; a string of shape ``S3Uri`` (``URI_SHAPE``) also accepts local locations, which
the walk checks in place of the model's pattern.
"""

from __future__ import annotations

import functools
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from emulator.config import cache_dir

if TYPE_CHECKING:
    from botocore.model import Shape

__all__ = [
    "EXTRA_ENUM_VALUES",
    "INT_RANGES",
    "LOCAL_INSTANCE_TYPES",
    "OPERATION",
    "URI_SHAPE",
    "Node",
    "compile_shape",
    "schema",
]

OPERATION = "CreateTrainingJob"
LOCAL_INSTANCE_TYPES = ("local", "local_gpu")
EXTRA_ENUM_VALUES: dict[str, tuple[str, ...]] = {"TrainingInstanceType": LOCAL_INSTANCE_TYPES}
URI_SHAPE = "S3Uri"

# Java's integer types: values outside them cannot even be deserialized by the service.
INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


@dataclass(eq=False)
class Node:
    """One shape of the model, reduced to what validation needs."""

    kind: str  # botocore type name: structure, list, map, string, integer, long, boolean, ...
    name: str  # the shape's name in the model, e.g. "TrainingJobName"
    min: int | None = None
    max: int | None = None
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    members: dict[str, Node] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    member: Node | None = None  # list member
    key: Node | None = None  # map key
    value: Node | None = None  # map value


def compile_shape(shape: Shape, memo: dict[str, Node]) -> Node:
    """``shape`` as a ``Node`` tree, with the local additions; ``memo`` maps shape names to
    the nodes compiled so far (pass ``{}``)."""
    from botocore.model import ListShape, MapShape, StringShape, StructureShape

    # Memoized by shape name: shared shapes compile once and recursive shapes terminate.
    if shape.name in memo:
        return memo[shape.name]
    meta = shape.metadata
    enum = tuple(cast(StringShape, shape).enum) if shape.type_name == "string" else ()
    node = Node(
        kind=shape.type_name,
        name=shape.name,
        min=meta.get("min"),
        max=meta.get("max"),
        enum=enum + EXTRA_ENUM_VALUES.get(shape.name, ()) if enum else (),
        pattern=meta.get("pattern"),
    )
    memo[shape.name] = node
    if isinstance(shape, StructureShape):
        node.members = {k: compile_shape(v, memo) for k, v in shape.members.items()}
        node.required = tuple(shape.required_members)
    elif isinstance(shape, ListShape):
        node.member = compile_shape(shape.member, memo)
    elif isinstance(shape, MapShape):
        node.key = compile_shape(shape.key, memo)
        node.value = compile_shape(shape.value, memo)
    return node


@functools.cache
def schema() -> Node:
    """The input shape of CreateTrainingJob. Loading botocore's model takes ~0.3 s, so the
    compiled tree is kept in the cache dir, one file per botocore version (and data path)."""
    cache = _cache_file()
    try:
        return _from_json(json.loads(cache.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or one we cannot read: compile, then try to keep it
    node = _compile_from_botocore()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{os.getpid()}")
        partial.write_text(json.dumps(_to_json(node)))
        partial.replace(cache)  # atomic: a concurrent reader sees all or nothing
    except OSError:
        pass  # a read-only cache dir only costs the 0.3 s next time
    return node


def _compile_from_botocore() -> Node:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model(OPERATION).input_shape
    assert shape is not None, f"botocore's model has no input for {OPERATION}"
    return compile_shape(shape, {})


def _cache_file() -> Path:
    key = f"{_botocore_installed()}-{os.environ.get('AWS_DATA_PATH', '')}"
    digest = f"{zlib.crc32(key.encode()):08x}"  # names a cache file; hashlib costs 3 ms
    return cache_dir() / f"create-training-job-schema-{_FORMAT}-{digest}.json"


def _botocore_installed() -> str:
    """Which botocore is installed, found without importing it (that takes 4 ms): its
    package file and when it was written, which an upgrade or a reinstall changes."""
    from importlib.util import find_spec

    spec = find_spec("botocore")
    if spec is None or spec.origin is None:
        return "none"
    stat = os.stat(spec.origin)
    return f"{spec.origin}-{stat.st_mtime_ns}-{stat.st_size}"


_FORMAT = 1  # bump when Node or the local additions change
_FIELDS = ("kind", "name", "min", "max", "pattern")


def _to_json(root: Node) -> dict[str, Any]:
    """Nodes by shape name (shared and recursive shapes appear once), children by name."""
    shapes: dict[str, dict[str, Any]] = {}
    pending = [root]
    while pending:
        node = pending.pop()
        if node.name in shapes:
            continue
        entry: dict[str, Any] = {key: getattr(node, key) for key in _FIELDS}
        entry["enum"] = list(node.enum)
        entry["required"] = list(node.required)
        entry["members"] = {key: child.name for key, child in node.members.items()}
        for key in ("member", "key", "value"):
            child = getattr(node, key)
            entry[key] = child.name if child is not None else None
        shapes[node.name] = entry
        pending.extend(node.members.values())
        pending.extend(c for c in (node.member, node.key, node.value) if c is not None)
    return {"root": root.name, "shapes": shapes}


def _from_json(data: dict[str, Any]) -> Node:
    shapes: dict[str, dict[str, Any]] = data["shapes"]
    nodes = {
        name: Node(
            **{key: entry[key] for key in _FIELDS},
            enum=tuple(entry["enum"]),
            required=tuple(entry["required"]),
        )
        for name, entry in shapes.items()
    }
    for name, entry in shapes.items():
        node = nodes[name]
        node.members = {key: nodes[child] for key, child in entry["members"].items()}
        for key in ("member", "key", "value"):
            if entry[key] is not None:
                setattr(node, key, nodes[entry[key]])
    return nodes[data["root"]]
