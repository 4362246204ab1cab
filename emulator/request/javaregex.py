"""Java regexes (java.util.regex) as Python ``re`` patterns.

The botocore model states its string patterns in Java's dialect; the service matches them with
java.util.regex. ``to_python`` translates what differs and occurs in the model, so that
``compile_java(pattern).fullmatch(text)`` agrees with the service:

- ``\\p{L}``-style Unicode general categories become explicit code-point ranges (``\\P{...}``
  their complement, outside classes only);
- POSIX classes such as ``\\p{Alnum}`` become their ASCII sets, as in Java by default;
- ``.`` stops at Java's line terminators (``LINE_TERMINATORS``), not only at ``\\n``;
- ``\\d \\w \\s`` are ASCII-only: ``compile_java`` compiles with ``re.ASCII``, as Java does
  without UNICODE_CHARACTER_CLASS.

So ``.*`` cannot match a line break, while ``[\\S\\s]*`` can.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

__all__ = ["LINE_TERMINATORS", "compile_java", "to_python"]

LINE_TERMINATORS = "\n\r\x85\u2028\u2029"  # what Java's '.' does not match
# Java's POSIX classes are ASCII-only unless UNICODE_CHARACTER_CLASS is set.
_POSIX_CLASSES = {
    "Lower": "a-z",
    "Upper": "A-Z",
    "ASCII": "\\x00-\\x7f",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Alnum": "a-zA-Z0-9",
    "XDigit": "0-9a-fA-F",
    "Space": " \\t\\n\\x0b\\f\\r",
    "Blank": " \\t",
    "Punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
}


@functools.cache
def _category_runs() -> tuple[tuple[int, int, str], ...]:
    """Maximal runs of code points sharing a Unicode general category (~0.3 s, once)."""
    runs: list[tuple[int, int, str]] = []
    start, current = 0, unicodedata.category("\x00")
    for cp in range(1, sys.maxunicode + 1):
        category = unicodedata.category(chr(cp))
        if category != current:
            runs.append((start, cp - 1, current))
            start, current = cp, category
    runs.append((start, sys.maxunicode, current))
    return tuple(runs)


def _escape_cp(cp: int) -> str:
    # Escapes only: no class-syntax characters ('-', ']', '[', '&', '~') can slip in.
    return f"\\U{cp:08x}"


@functools.cache
def _property_class(name: str) -> str:
    """The body of a character class equivalent to Java's ``\\p{name}``."""
    if name in _POSIX_CLASSES:
        return _POSIX_CLASSES[name]
    if re.fullmatch(r"[A-Z][a-z]?", name):  # a Unicode general category such as L or Lu
        ranges = [(a, b) for a, b, cat in _category_runs() if cat.startswith(name)]
        if ranges:
            return "".join(
                _escape_cp(a) if a == b else f"{_escape_cp(a)}-{_escape_cp(b)}" for a, b in ranges
            )
    raise ValueError(f"unsupported Java character property \\p{{{name}}}")


def to_python(pattern: str) -> str:
    """The Python ``re`` source equivalent to the Java regex ``pattern`` (see the module docstring).

    Compile the result with ``re.ASCII``. Raises ``ValueError`` for a ``\\p{...}`` property
    this module does not know, or a negated ``\\P{...}`` inside a character class.
    """
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and pattern[i + 1 : i + 2] in ("p", "P") and pattern[i + 2 : i + 3] == "{":
            end = pattern.index("}", i)
            body = _property_class(pattern[i + 3 : end])
            if pattern[i + 1] == "P":
                if in_class:
                    raise ValueError("negated \\P{...} inside a class is not supported")
                out.append(f"[^{body}]")
            else:
                out.append(body if in_class else f"[{body}]")
            i = end + 1
            continue
        if char == "\\":
            out.append(pattern[i : i + 2])  # an escape: copy it whole
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        elif char == "." and not in_class:
            char = f"[^{re.escape(LINE_TERMINATORS)}]"
        out.append(char)
        i += 1
    return "".join(out)


@functools.cache
def compile_java(pattern: str) -> re.Pattern[str] | None:
    """The compiled translation of a Java regex (cached); None if it cannot be translated.

    tests/test_javaregex.py checks that every pattern of the CreateTrainingJob model
    translates, so None only happens with a future botocore, where the caller skipping one
    check beats failing every request.
    """
    try:
        return re.compile(to_python(pattern), re.ASCII)
    except (ValueError, re.error):
        return None
