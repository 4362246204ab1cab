"""How a problem of a request is worded: the user's values echoed short, what was expected, and
how to fix it when there is an obvious way.

Every problem is one string ``Path.To.Field: what is wrong (got ...); how to fix it`` with list
indices in the path (``InputDataConfig[1].ChannelName``); the request itself is ``request``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from emulator.request.schema import INT_RANGES, URI_SHAPE, Node, schema

__all__ = [
    "BIG_ENUM",
    "PATTERN_HINTS",
    "TYPE_WORDS",
    "child_path",
    "excerpt",
    "expectation",
    "number",
    "plural",
    "show",
    "suggest",
    "type_fix",
]

BIG_ENUM = 12  # list enums longer than this by a few examples, not in full
_SHOWN_CHARS = 60  # longest excerpt of a user's value echoed in a message

# Hints appended to pattern failures, by shape name.
PATTERN_HINTS = {
    "TrainingJobName": "use letters, digits and hyphens; start and end with a letter or digit",
    "ChannelName": "use letters, digits, '.', '-' and '_'",
    "TrainingEnvironmentKey": "use letters, digits and '_', not starting with a digit",
    "RoleArn": "give an IAM role ARN such as arn:aws:iam::123456789012:role/MyRole",
    URI_SHAPE: "give s3://bucket/prefix, file:///absolute/path or a local path",
}

TYPE_WORDS = {
    "structure": "an object",
    "map": "an object",
    "list": "a list",
    "string": "a string",
    "integer": "an integer",
    "long": "an integer",
    "boolean": "a boolean (true or false)",
    "float": "a number",
    "double": "a number",
    "timestamp": "a timestamp",
    "blob": "binary data",
}


def excerpt(text: str) -> str:
    """A JSON-quoted string, cut short: huge values must not flood the message."""
    head = json.dumps(text[:_SHOWN_CHARS], ensure_ascii=False)
    if len(text) > _SHOWN_CHARS:
        head = f'{head[:-1]}..." ({len(text)} characters)'
    # Lone surrogates (valid in JSON, not in UTF-8) would break printing the message.
    return head.encode("utf-8", "backslashreplace").decode("utf-8")


def show(value: object) -> str:
    """What the user gave, e.g. ``int 10``, ``str "abc"``, ``list of 3 items``, ``None``."""
    if value is None:
        return "None"
    if isinstance(value, str):
        return f"str {excerpt(value)}"
    if isinstance(value, bool | float):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, int):
        return f"int {number(value)}"
    if isinstance(value, list | tuple):
        return f"{type(value).__name__} of {plural(len(value), 'item')}"
    if isinstance(value, dict):
        return f"dict with {plural(len(value), 'key')}"
    return type(value).__name__


def number(value: int) -> str:
    """An integer as digits, or its size when it is huge."""
    # str() of a huge int is slow (and refused past 4300 digits): show its size instead.
    if -(10**30) < value < 10**30:
        return str(value)
    return f"(a number of about {int(abs(value).bit_length() * 0.30103) + 1} digits)"


def child_path(path: str, name: object) -> str:
    """``Parent.Child`` for plain names (``HyperParameters.epochs``), else ``Parent["odd key"]``."""
    if isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_\-]{1,60}", name):
        return f"{path}.{name}" if path else name
    return f"{path}[{excerpt(name) if isinstance(name, str) else show(name)}]"


def plural(count: int, word: str) -> str:
    """``1 item``, ``2 items``, ``3 entries``."""
    if count == 1:
        return f"1 {word}"
    return f"{count} {'entries' if word == 'entry' else word + 's'}"


def _size_phrase(node: Node, unit: str) -> str:
    low, high = node.min or 0, node.max
    if high is not None and low:
        return f" of {low}-{high} {unit}s"
    if high is not None:
        return f" of at most {plural(high, unit)}"
    return f" of at least {plural(low, unit)}" if low else ""


def expectation(node: Node) -> str:
    """What a member should be, e.g. ``a string of 1-63 characters``."""
    if node.name == URI_SHAPE:
        return "an s3:// URI, a file:///absolute/path URI or a local path"
    if node.enum:
        shown = node.enum if len(node.enum) <= BIG_ENUM else (*node.enum[:3], "...")
        return "one of " + ", ".join(shown)
    if node.kind == "string":
        return "a string" + _size_phrase(node, "character")
    if node.kind in INT_RANGES:
        low = f" >= {node.min}" if node.min is not None else ""
        high = f" <= {node.max}" if node.max is not None else ""
        return "an integer" + (low + " and" + high if low and high else low or high)
    if node.kind == "boolean":
        return "true or false"
    if node.kind == "list":
        return "a list" + _size_phrase(node, "item")
    if node.kind == "map":
        return "an object of string keys and string values"
    if node.kind == "structure" and node.required:
        return "an object with " + ", ".join(node.required)
    return "an object" if node.kind == "structure" else f"a {node.kind}"


def type_fix(node: Node, value: object, accepts: Callable[[str], bool]) -> str:
    """How to fix a value of the wrong type, when there is an obvious way.

    ``accepts(text)`` tells whether ``node`` takes the string ``text``: quoting a number is
    suggested only where the quoted value would be valid."""
    if value is None and node is not schema():
        return "; null is not a value here: give one or leave the member out"
    if node.kind == "string" and isinstance(value, int | float | bool):
        if type(value) is int and not -(10**30) < value < 10**30:
            return ""  # nobody meant a number that size
        quoted = json.dumps(value)
        if accepts(quoted):
            return f"; quote the value: {json.dumps(quoted)}"
    if node.kind in INT_RANGES and isinstance(value, str) and re.fullmatch(r"-?\d{1,30}", value):
        return f"; remove the quotes: {int(value)}"
    if node.kind in INT_RANGES and isinstance(value, float) and value.is_integer():
        return f"; use a whole number: {int(value)}"
    if node.kind == "boolean" and isinstance(value, str) and value.lower() in ("true", "false"):
        return f"; use {value.lower()} without quotes"
    if node.kind == "list" and isinstance(value, str | dict):
        return "; wrap it in a list: [...]"
    return ""


def suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """`; did you mean "X"?` for a near miss (case or a typo), else ''."""
    if len(word) > 100:
        return ""
    folded = [c for c in choices if c.lower() == word.lower()]
    prefixed = [c for c in choices if c.lower().endswith("." + word.lower())]  # m5.xlarge
    import difflib  # only when a word is misspelt: not on every start

    close = folded or prefixed or difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f'; did you mean "{close[0]}"?' if close else ""
