"""MetricDefinitions: log lines in, metric time series out.

Rules (CONTRACT.md section 5, our documented choices where SageMaker says nothing):
- every definition's regex is applied to every line of stdout and stderr, with ``re.search``
  (the regex may match anywhere in the line); only the first match in a line counts;
- the value is the first capture group, or the whole match when the regex has no group;
- the value must parse as a finite float (``1``, ``-0.5``, ``3e-4``; not ``nan``, ``inf``,
  ``1_000`` or ``0x10``): anything else is skipped, as CloudWatch would reject it;
- every accepted value is kept with its timestamp (when the line was read); the
  ``FinalMetricDataList`` holds the LAST value of each metric by time, in definition order;
- a line is what observe/lines.py cuts: ended by ``\n`` or ``\r``, at most 64 KiB.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from emulator.request.spec import MetricDefinition
from emulator.state.store import MetricPoint, MetricValues

_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_NOT_DECIMAL = re.compile(r"[^0-9.eE+\-\s]")  # a character no plain decimal number holds


def parse_metric_value(text: str) -> float | None:
    """The float in ``text`` (surrounding blanks allowed), or None when it is not a plain,
    finite decimal number."""
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def parse_metric_values(texts: Sequence[str | None]) -> list[float]:
    """``parse_metric_value`` of each text, leaving out Nones and what is not a value: in a
    few C calls when every text holds only decimal characters (the usual case)."""
    if texts and None not in texts:
        strings = cast(Sequence[str], texts)
        if not _NOT_DECIMAL.search("".join(strings)):
            # With only these characters, float() accepts exactly the plain decimals.
            try:
                values = list(map(float, strings))
            except ValueError:
                pass
            else:
                if all(map(math.isfinite, values)):
                    return values
    return [v for t in texts if t is not None and (v := parse_metric_value(t)) is not None]


# Constructs whose meaning at a line's edge depends on what lies beyond it: a regex using one
# of them is applied line by line, never to a batch's text as a whole (see _Definition).
_EDGE_SENSITIVE = re.compile(r"\\[ABZz]|\(\?(?!:|P<|P=)|[*+?}]\+")


class _Definition:
    """One MetricDefinition, with the fast way to apply it to many lines at once.

    For most regexes, searching the lines joined by ``\\n`` (with ``re.MULTILINE``, so ``^``
    and ``$`` still mean a line's start and end) finds, in each line, the same first match
    as ``re.search`` on that line alone: a match that stays within its line is that line's
    first match. From a match that runs over a line's end on, the lines are searched one at
    a time (that line alone decides). Regexes with lookarounds, inline flags, ``\\A``,
    ``\\B``, ``\\Z``, atomic groups or possessive quantifiers (whose result at a line's edge
    could differ) are applied line by line."""

    def __init__(self, definition: MetricDefinition) -> None:
        self.name = definition.name
        self.pattern = re.compile(definition.regex)
        self.group = 1 if self.pattern.groups else 0  # the value: group 1, or the match
        self.joined: re.Pattern[str] | None = None
        if not _EDGE_SENSITIVE.search(definition.regex):
            self.joined = re.compile(definition.regex, re.MULTILINE)

    def value(self, match: re.Match[str]) -> float | None:
        text = match.group(self.group)
        return parse_metric_value(text) if text is not None else None

    def values(self, lines: Sequence[str]) -> list[float]:
        """The value of every line that has one, in order."""
        if self.joined is None:
            texts = []
            for line in lines:
                match = self.pattern.search(line)
                if match is not None:
                    texts.append(match.group(self.group))
            return parse_metric_values(texts)
        return parse_metric_values(self._texts_joined("\n".join(lines)))

    def _texts_joined(self, text: str) -> list[str | None]:
        """The value text of each line's first match, all lines at once."""
        assert self.joined is not None
        texts: list[str | None] = []
        line_end = -1  # where the line of the last match kept ends
        find, group = text.find, self.group
        for match in self.joined.finditer(text):
            start = match.start()
            if start > line_end:  # the first match of a line
                line_end = find("\n", start)
                if line_end < 0:
                    line_end = len(text)
                if match.end() <= line_end:
                    texts.append(match.group(group))
                    continue
                alone = self.pattern.search(text[text.rfind("\n", 0, start) + 1 : line_end])
                texts.append(alone.group(group) if alone is not None else None)
            elif match.end() <= line_end:  # a second match in the same line
                continue
            # A match ran over a line's end: the search may have skipped part of the next
            # line, so go on one line at a time from there.
            return texts + self._texts_searched(text, line_end + 1)
        return texts

    def _texts_searched(self, text: str, position: int) -> list[str | None]:
        assert self.joined is not None
        texts: list[str | None] = []
        size = len(text)
        while position <= size and (match := self.joined.search(text, position)) is not None:
            start = match.start()
            end = text.find("\n", start)
            if end < 0:
                end = size
            if match.end() <= end:
                texts.append(match.group(self.group))
            else:  # ran over the line's end: the line alone decides
                alone = self.pattern.search(text[text.rfind("\n", 0, start) + 1 : end])
                texts.append(alone.group(self.group) if alone is not None else None)
            position = end + 1
        return texts


class MetricsCollector:
    """Applies MetricDefinitions to log lines; safe to feed from one thread per host.

    Keeps the last point of each metric (FinalMetricDataList), and every point when
    ``keep_series`` (the job keeps them in its store instead, so memory stays flat)."""

    def __init__(self, definitions: Sequence[MetricDefinition], keep_series: bool = True) -> None:
        self._definitions = [_Definition(d) for d in definitions]
        self._order = [d.name for d in definitions]
        self._keep_series = keep_series
        self._series: dict[str, list[MetricPoint]] = {}
        self._last: dict[str, MetricPoint] = {}
        self._lock = threading.Lock()

    def feed(
        self, line: str, host: str = "algo-1", timestamp: float | None = None
    ) -> list[MetricPoint]:
        """Match one line; store and return the points it yields."""
        if not self._definitions:
            return []
        stamp = time.time() if timestamp is None else timestamp
        points = []
        for definition in self._definitions:
            match = definition.pattern.search(line)
            if match is None:
                continue
            value = definition.value(match)
            if value is not None:
                points.append(MetricPoint(definition.name, value, stamp, host))
        self._keep(points)
        return points

    def feed_lines(
        self, lines: Sequence[str], host: str = "algo-1", timestamp: float | None = None
    ) -> list[MetricValues]:
        """Match many lines read at ``timestamp``: the values they yield, per metric (in
        definition order), each metric's in line order. The same points as ``feed`` on each
        line, found faster."""
        if not self._definitions or not lines:
            return []
        stamp = time.time() if timestamp is None else timestamp
        found = []
        for definition in self._definitions:
            values = definition.values(lines)
            if not values:
                continue
            name = definition.name
            found.append(MetricValues(name, host, stamp, values))
            if self._keep_series:
                self._keep([MetricPoint(name, value, stamp, host) for value in values])
            else:
                self._keep([MetricPoint(name, values[-1], stamp, host)])
        return found

    def _keep(self, points: list[MetricPoint]) -> None:
        if not points:
            return
        with self._lock:
            for point in points:
                if self._keep_series:
                    self._series.setdefault(point.name, []).append(point)
                last = self._last.get(point.name)
                if last is None or point.timestamp >= last.timestamp:  # the last by time
                    self._last[point.name] = point

    def series(self) -> dict[str, list[MetricPoint]]:
        """Every point of each metric (empty without ``keep_series``)."""
        with self._lock:
            return {name: list(points) for name, points in self._series.items()}

    def final_metric_data_list(self) -> list[dict[str, Any]]:
        """DescribeTrainingJob's FinalMetricDataList: the last value of each metric."""
        with self._lock:
            final = []
            for name in dict.fromkeys(self._order):
                last = self._last.get(name)
                if last is not None:
                    stamp = datetime.fromtimestamp(last.timestamp, UTC).isoformat()
                    final.append({"MetricName": name, "Value": last.value, "Timestamp": stamp})
            return final
