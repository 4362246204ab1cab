"""How deep a request may nest, checked without recursion before anything recurses over it.

No member of a CreateTrainingJob request nests more than a few levels, but a request can hold
anything: HyperParameters, an unknown key, a channel may carry a list nested a thousand levels
deep. Copying such a request (``copy.deepcopy``) or reading it (``json.loads``) recurses once or
twice per level and would end in a RecursionError; ``MAX_DEPTH`` refuses it first, with a
problem worded like every other.
"""

from __future__ import annotations

from typing import Any

from emulator.request.messages import child_path

__all__ = ["MAX_DEPTH", "depth_problem", "depth_problems"]

# Levels of objects and lists, the request itself being level 1: several times what the API's
# shapes need, far below what Python's recursion limit allows to copy or walk.
MAX_DEPTH = 32

_CONTAINERS = (dict, list, tuple)


def depth_problem(path: str) -> str:
    """The problem of a value at ``path`` nested deeper than ``MAX_DEPTH``."""
    return (
        f"{path}: nested deeper than {MAX_DEPTH} levels (no member of a CreateTrainingJob "
        "request nests that deep); remove the deeply nested value"
    )


def depth_problems(request: object) -> list[str]:
    """One problem per member of ``request`` (or for the request itself, when it is not an
    object) nesting deeper than ``MAX_DEPTH`` levels; [] when none does."""
    if not isinstance(request, dict):
        return [depth_problem("request")] if _too_deep(request, 1) else []
    return [
        depth_problem(child_path("", key))
        for key, value in request.items()
        if _too_deep(key, 2) or _too_deep(value, 2)
    ]


def _too_deep(value: object, level: int) -> bool:
    """Whether ``value``, at ``level``, holds an object or a list past ``MAX_DEPTH``."""
    if not isinstance(value, _CONTAINERS):
        return False
    pending: list[tuple[dict[Any, Any] | list[Any] | tuple[Any, ...], int]] = [(value, level)]
    # The deepest level each container was explored at: a value shared (or holding itself) is
    # explored again only deeper, so the work stays bounded even for cyclic Python objects.
    explored: dict[int, int] = {}
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            return True
        if explored.get(id(item), 0) >= depth:
            continue
        explored[id(item)] = depth
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, _CONTAINERS))
    return False
