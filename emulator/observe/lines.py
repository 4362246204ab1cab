"""Where a line of container output ends, for the metrics and the user's sink.

The log file keeps the bytes exactly as they came; consumers get lines, cut by these rules:

- ``\\n`` ends a line, and so does ``\\r\\n`` (any run of ``\\r`` then ``\\n``): once, even
  when the ``\\r`` and the ``\\n`` arrive in different chunks. Blank lines are lines.
- A ``\\r`` not followed by ``\\n`` (a progress bar redrawing itself, as tqdm does) ends a
  line too, unless the line is empty: each redraw is a line of its own, not one giant line.
- A line longer than ``MAX_LINE_BYTES`` (64 KiB) reaches consumers in pieces of at most that
  size, each a line of its own (cut before a UTF-8 character, never inside one); nothing is
  dropped. So a consumer never holds more than 64 KiB of one line, and a 50 MB line without
  a newline costs time and memory linear in its size.
- A last line without a newline is a line once the output ends.

Lines are decoded as UTF-8, bad bytes replaced.
"""

from __future__ import annotations

import re

MAX_LINE_BYTES = 64 * 1024

_SEPARATOR = re.compile(rb"(\r*\n|\r+)")  # captured: the split keeps each separator
_LEADING_NEWLINE = re.compile(rb"\r*\n")


class LineSplitter:
    """One stream's bytes in, its complete lines out (raw, without their separators)."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._max = max_line
        self._pending = bytearray()  # the line being read, at most max_line bytes
        self._after_return = False  # the last chunk ended with a \r that ended a line

    def feed(self, data: bytes) -> list[bytes]:
        """The lines that ``data`` completes, in order."""
        if self._after_return:  # the \n of a \r\n split across chunks: not a blank line
            leading = _LEADING_NEWLINE.match(data)
            if leading is not None:
                data = data[leading.end() :]
            elif not data.strip(b"\r"):
                return []  # only more \r: still right after that line
            self._after_return = False
        lines: list[bytes] = []
        if b"\r" not in data:
            if b"\n" not in data:
                self._keep(data, lines)
                return lines
            parts = data.split(b"\n")
            self._complete(parts[0], lines)
            middle = parts[1:-1]
            if middle and max(map(len, middle)) > self._max:
                for part in middle:
                    self._line(part, lines)
            else:
                lines.extend(middle)  # the usual case, at C speed
            self._keep(parts[-1], lines)
            return lines
        parts = _SEPARATOR.split(data)  # text, separator, text, ..., text
        returned = False  # the last separator is a \r that ended a line
        for index in range(0, len(parts) - 1, 2):
            text, separator = parts[index], parts[index + 1]
            newline = separator.endswith(b"\n")
            ends = newline or bool(text) or bool(self._pending)
            if ends:
                self._complete(text, lines)
            returned = ends and not newline
        self._keep(parts[-1], lines)
        self._after_return = returned and not parts[-1]
        return lines

    def end(self) -> list[bytes]:
        """The last line when the output ended without a newline (or nothing)."""
        if not self._pending:
            return []
        last = bytes(self._pending)
        self._pending.clear()
        return [last]

    def _complete(self, text: bytes, lines: list[bytes]) -> None:
        """``text`` ends the pending line."""
        if self._pending:
            self._pending += text
            text = bytes(self._pending)
            self._pending.clear()
        self._line(text, lines)

    def _line(self, text: bytes, lines: list[bytes]) -> None:
        if len(text) <= self._max:
            lines.append(text)
            return
        start = 0
        while len(text) - start > self._max:
            cut = self._cut(text, start)
            lines.append(text[start:cut])
            start = cut
        lines.append(text[start:])

    def _keep(self, text: bytes, lines: list[bytes]) -> None:
        """``text`` continues the pending line; whole pieces beyond the cap go out now."""
        if not text:
            return
        self._pending += text
        if len(self._pending) <= self._max:
            return
        start = 0
        while len(self._pending) - start > self._max:
            cut = self._cut(self._pending, start)
            lines.append(bytes(self._pending[start:cut]))
            start = cut
        del self._pending[:start]

    def _cut(self, text: bytes | bytearray, start: int) -> int:
        """Where the piece starting at ``start`` ends: at most max bytes, before a UTF-8
        continuation byte when one of the last three bytes allows it."""
        cut = start + self._max
        for back in range(4):
            if cut - back > start and text[cut - back] & 0xC0 != 0x80:
                return cut - back
        return cut


def decode_lines(lines: list[bytes]) -> list[str]:
    """Each line as text (UTF-8, bad bytes replaced), in one decode for the whole list."""
    if not lines:
        return []
    # No line holds a \n, and a \n is never part of a UTF-8 sequence: splitting the decoded
    # whole gives exactly the lines decoded one by one.
    return b"\n".join(lines).decode("utf-8", errors="replace").split("\n")
