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
from dataclasses import dataclass, field
from typing import cast

import botocore.session
from botocore.model import ListShape, MapShape, Shape, StringShape, StructureShape

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
    """The input shape of CreateTrainingJob (loading the model takes ~0.3 s, so once)."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model(OPERATION).input_shape
    assert shape is not None, f"botocore's model has no input for {OPERATION}"
    return compile_shape(shape, {})
