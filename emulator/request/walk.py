"""The walk of a request against the compiled model (``emulator.request.schema``).

``check`` records every breach: unknown keys (reported like the real API: "Unknown parameter
in ..."), missing required members, types, string lengths, list and map sizes, map keys and
values, enums, patterns and integer ranges. (botocore's own ParamValidator checks only types,
required members and minimums.) Integers are also held to the service's Java ranges: 32-bit
for ``integer``, 64-bit for ``long``.

Patterns are Java regexes on the service side (java.util.regex), matched here with
``fullmatch`` after ``emulator.request.javaregex`` translates what differs and occurs in the
model (Unicode and POSIX ``\\p{...}`` classes, ``.`` and Java's line terminators, ASCII-only
``\\d \\w \\s``). So a HyperParameters value (``.*``) cannot hold a line break, while an
Environment value (``[\\S\\s]*``) can. Regexes are compiled lazily and cached.

Local addition: a string of shape ``S3Uri`` (channel S3Uri, S3OutputPath of every config,
CheckpointConfig.S3Uri) also accepts ``file:///abs/path`` (or ``file://localhost/...``) URIs
and plain local paths, absolute or relative, as ``emulator.storage.local`` reads them; the
model's pattern applies to s3:// and https:// URIs only, other schemes are refused.

The walk descends only where the model has a shape, and ``validate_request`` holds the request
to ``emulator.request.nesting.MAX_DEPTH`` levels before it: its recursion stays shallow.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import cast

from emulator.request.javaregex import LINE_TERMINATORS, compile_java
from emulator.request.messages import (
    BIG_ENUM,
    PATTERN_HINTS,
    TYPE_WORDS,
    child_path,
    excerpt,
    expectation,
    number,
    plural,
    show,
    suggest,
    type_fix,
)
from emulator.request.schema import EXTRA_ENUM_VALUES, INT_RANGES, URI_SHAPE, Node
from emulator.storage.uris import is_s3_uri

__all__ = ["Problems", "check"]

Problems = list[str]

_MAX_UNKNOWN_SHOWN = 10  # unknown parameters reported one by one per object, then counted

_ACCEPTED_TYPES: dict[str, tuple[type, ...]] = {
    "structure": (dict,),
    "map": (dict,),
    "list": (list, tuple),  # as botocore: a tuple is a list
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "boolean": (bool,),
    # Not used by CreateTrainingJob today; checked for type so a new member is not waved through.
    "float": (int, float),
    "double": (int, float),
    "timestamp": (str, int, float, datetime.datetime),
    "blob": (bytes, bytearray, str),
}


def check(node: Node, value: object, path: str, out: Problems) -> None:
    """Record every breach of ``node``'s constraints by ``value`` (at ``path``) in ``out``."""
    checker = _CHECKERS.get(node.kind)
    if checker is not None:  # (a "document" member would take any JSON value)
        checker(node, value, path, out)


def _type_ok(node: Node, value: object, path: str, out: Problems) -> bool:
    expected = _ACCEPTED_TYPES[node.kind]
    # bool is an int in Python, but the API takes it only where a boolean is expected.
    if isinstance(value, expected) and (bool in expected or not isinstance(value, bool)):
        return True
    word = TYPE_WORDS[node.kind]
    fix = type_fix(node, value, lambda text: _accepts(node, text))
    out.append(f"{path or 'request'}: must be {word} (got {show(value)}){fix}")
    return False


def _accepts(node: Node, text: str) -> bool:
    scratch: Problems = []
    _check_string(node, text, "", scratch)
    return not scratch


def _check_structure(node: Node, value: object, path: str, out: Problems) -> None:
    if not _type_ok(node, value, path, out):
        return
    request = cast(dict[object, object], value)
    where = path or "input"
    unknown = 0
    for name in node.required:
        if name not in request:
            out.append(
                f"{child_path(path, name)}: missing required parameter; "
                f"give {expectation(node.members[name])}"
            )
    for key, item in request.items():
        if item is None and key in node.required:  # null is no value: say what to give
            out.append(
                f"{child_path(path, key)}: required parameter is null; "
                f"give {expectation(node.members[key])}"
            )
            continue
        if not isinstance(key, str):
            out.append(
                f"{child_path(path, key)}: parameter names must be strings (got {show(key)})"
            )
            continue
        known = node.members.get(key)
        if known is not None:
            check(known, item, child_path(path, key), out)
            continue
        unknown += 1
        if unknown <= _MAX_UNKNOWN_SHOWN:
            choices = ", ".join(node.members)
            out.append(
                f"{child_path(path, key)}: Unknown parameter in {where}: "
                f"{excerpt(key)}, must be one of: {choices}{suggest(key, list(node.members))}"
            )
    if unknown > _MAX_UNKNOWN_SHOWN:  # a junk dict must not produce a million messages
        more = unknown - _MAX_UNKNOWN_SHOWN
        out.append(f"{path or 'request'}: {plural(more, 'more unknown parameter')}; remove them")


def _check_count(node: Node, count: int, unit: str, path: str, out: Problems) -> None:
    if node.min is not None and count < node.min:
        out.append(f"{path}: must have at least {plural(node.min, unit)} (got {count})")
    if node.max is not None and count > node.max:
        out.append(f"{path}: must have at most {plural(node.max, unit)} (got {count})")


def _check_list(node: Node, value: object, path: str, out: Problems) -> None:
    if not _type_ok(node, value, path, out):
        return
    items = cast(list[object], value)
    _check_count(node, len(items), "item", path, out)
    assert node.member is not None
    # Past the maximum the request is already wrong: don't walk a million extra items.
    for index, item in enumerate(items[: node.max]):
        check(node.member, item, f"{path}[{index}]", out)


def _check_map(node: Node, value: object, path: str, out: Problems) -> None:
    if not _type_ok(node, value, path, out):
        return
    entries = cast(dict[object, object], value)
    _check_count(node, len(entries), "entry", path, out)
    assert node.key is not None and node.value is not None
    for index, (key, item) in enumerate(entries.items()):
        if node.max is not None and index >= node.max:
            break
        entry_path = child_path(path, key)
        if isinstance(key, str):
            _check_string(node.key, key, entry_path, out, subject="the key ")
        else:
            out.append(f"{entry_path}: keys must be strings (got {show(key)}); quote the key")
        check(node.value, item, entry_path, out)


def _check_string(node: Node, value: object, path: str, out: Problems, subject: str = "") -> None:
    """A string member, or a map key when ``subject`` is "the key " (then named so)."""
    if not _type_ok(node, value, path, out):
        return
    text = cast(str, value)
    size_ok = _check_length(node, text, path, out, subject)
    if node.enum:
        _check_enum(node, text, path, out)
    elif node.name == URI_SHAPE and not is_s3_uri(text):
        _check_local_uri(text, path, out)  # local addition: the model's pattern is for S3
    elif node.pattern and size_ok:  # an over-long value already failed; spare the regex
        _check_pattern(node, text, path, out, subject)


def _check_length(node: Node, text: str, path: str, out: Problems, subject: str) -> bool:
    if node.min is not None and len(text) < node.min:
        out.append(
            f"{path}: {subject}must be at least {plural(node.min, 'character')} long "
            f"(got {len(text)})"
        )
        return False
    if node.max is not None and len(text) > node.max:
        out.append(
            f"{path}: {subject}must be at most {plural(node.max, 'character')} long "
            f"(got {len(text)}); shorten it"
        )
        return False
    return True


def _check_enum(node: Node, text: str, path: str, out: Problems) -> None:
    if text in node.enum:
        return
    if len(node.enum) <= BIG_ENUM:
        allowed = "one of " + ", ".join(node.enum)
    else:
        examples = ", ".join((*node.enum[:3], *EXTRA_ENUM_VALUES.get(node.name, ())))
        allowed = f"one of the {len(node.enum)} values of {node.name} (such as {examples})"
    out.append(f"{path}: must be {allowed} (got {excerpt(text)}){suggest(text, node.enum)}")


def _check_pattern(node: Node, text: str, path: str, out: Problems, subject: str) -> None:
    assert node.pattern is not None
    regex = compile_java(node.pattern)
    if regex is None or regex.fullmatch(text):
        return
    hint = PATTERN_HINTS.get(node.name, "")
    if not hint and any(c in LINE_TERMINATORS for c in text):
        hint = "remove the line breaks (the API's '.' does not match them)"
    out.append(
        f"{path}: {subject}must match the pattern {node.pattern} (got {excerpt(text)})"
        + (f"; {hint}" if hint else "")
    )


def _check_local_uri(text: str, path: str, out: Problems) -> None:
    """file:///abs/path or a plain path (absolute or relative): the emulator's local sources."""
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", text)
    if text.startswith("file://"):
        rest = text[len("file://") :]
        if not (rest.startswith("/") or rest.startswith("localhost/")):
            out.append(
                f"{path}: a file:// URI names an absolute path (got {excerpt(text)}); "
                "write file:///absolute/path, or give a relative path without file://"
            )
    elif not text.strip():
        out.append(f"{path}: must not be empty; {PATTERN_HINTS[URI_SHAPE]}")
    elif scheme and scheme.group(1).lower() in ("s3", "https", "http", "file", "s3a", "s3n"):
        out.append(
            f"{path}: malformed or unsupported URI (got {excerpt(text)}); "
            + PATTERN_HINTS[URI_SHAPE]
        )
    elif "://" in text:
        out.append(
            f"{path}: unsupported URI scheme (got {excerpt(text)}); " + PATTERN_HINTS[URI_SHAPE]
        )
    if "\x00" in text:
        out.append(f"{path}: must not contain NUL characters")


def _check_integer(node: Node, value: object, path: str, out: Problems) -> None:
    if not _type_ok(node, value, path, out):
        return
    integer = cast(int, value)
    low, high = INT_RANGES[node.kind]
    low = low if node.min is None else max(low, node.min)
    high = high if node.max is None else min(high, node.max)
    if integer < low:
        out.append(f"{path}: must be at least {low} (got {number(integer)})")
    elif integer > high:
        out.append(f"{path}: must be at most {high} (got {number(integer)})")


def _check_type(node: Node, value: object, path: str, out: Problems) -> None:
    _type_ok(node, value, path, out)


_CHECKERS: dict[str, Callable[[Node, object, str, Problems], None]] = {
    "structure": _check_structure,
    "list": _check_list,
    "map": _check_map,
    "string": _check_string,
    "integer": _check_integer,
    "long": _check_integer,
    "boolean": _check_type,
    "float": _check_type,
    "double": _check_type,
    "timestamp": _check_type,
    "blob": _check_type,
}
