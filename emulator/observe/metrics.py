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

A chatty job gives many lines per batch, so ``feed_lines`` applies each regex to the whole
batch at once, with the very same results (``_BatchForm``), skips the batches and lines that
lack a literal every match holds, and parses the values in bulk; ``feed`` is the plain rule,
line by line.
"""

from __future__ import annotations

import importlib
import math
import re
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, cast

from emulator.request.spec import MetricDefinition
from emulator.state.store import MetricPoint, MetricValues

_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_NOT_DECIMAL = re.compile(r"[^0-9.eE+\-\s]")  # a character no plain decimal number holds
# The ASCII characters a plain decimal number, blanks around it included, may hold: deleted
# from a batch's texts in one C call, whatever is left rules out the bulk path.
_DECIMAL_BYTES = b"0123456789.eE+- \t\n\r\x0b\x0c"


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
    few C calls when every text is a value (the usual case)."""
    if None in texts:
        return _values(list(filter(None, texts)))
    return _values(cast(Sequence[str], texts))


def _values(texts: Sequence[str]) -> list[float]:
    """``parse_metric_values`` of texts that are never None."""
    joined = "".join(texts)
    if joined.isascii() and not joined.encode("ascii").translate(None, _DECIMAL_BYTES):
        # Only these characters: float() takes plain decimals only, no nan, inf or "1_0".
        try:
            values = list(map(float, texts))
        except ValueError:
            pass
        else:
            # A nan or an inf makes the sum so; finite values that overflow it only send
            # them to the checks one by one below.
            if math.isfinite(sum(values)):
                return values
    found = []
    for text in texts:
        if _NOT_DECIMAL.search(text) is None:
            try:
                value = float(text)
            except ValueError:  # not a number, or blanks float() keeps ("\x1c")
                pass
            else:
                if math.isfinite(value):
                    found.append(value)
                continue
        if (number := parse_metric_value(text)) is not None:  # other digits, blanks
            found.append(number)
    return found


# -- one regex over a whole batch ------------------------------------------------------------

_NL = 10  # ord("\n")
_CANDIDATE_SHARE = 4  # look for a literal's lines one by one when under 1 line in this many


class _Decline(Exception):
    """This regex is applied line by line (no batch form with the very same results)."""


class _BatchForm:
    """The batch form of one regex, built with the stdlib's regex parser and compiler
    (``re._parser``, ``re._compiler``: private, so anything unexpected declines).

    Lines hold no ``\\n``, so a regex finds the same in a line whatever it would make of a
    ``\\n``. The batch form is the regex with ``\\n`` taken out of everything that consumes a
    character (``.``, ``[^,]``, ``\\s``, ``\\D``...), ``\\A``/``\\Z`` as ``^``/``$`` under
    MULTILINE, so that no match, lookaround or backtrack can reach past its line in the
    lines, each ended by ``\\n``; followed by ``[^\\n]*\\n?`` so that a match takes the rest of
    its line and its ``\\n``, the next one starting a later line: ``findall`` on the text gives
    each line's first match, exactly as ``re.search`` on each line, and after the last ``\\n``
    at most an empty match, whose value is empty (never a number). ``\\B`` (whose meaning on
    an empty line changed in Python 3.14) and a literal ``\\n`` decline."""

    def __init__(self, regex: str) -> None:
        self.pattern: re.Pattern[str] | None = None
        self.literal = ""  # a substring of every match (prefilter), or ""
        self.folded = False  # the literal is in lowercase: look for it in lowercase text
        self.prefixed = False  # the regex starts with it: re's own search skips to it
        try:
            parser: Any = importlib.import_module("re._parser")
            compiler: Any = importlib.import_module("re._compiler")
            self._p = parser
            self._literal(parser.parse(regex))
            tree = parser.parse(regex)
            state = tree.state
            body = self._local(tree)
            groups = state.groups  # group 0 included
            if groups == 1:  # no group: the value is the whole match, made group 1
                gid = state.opengroup()
                state.closegroup(gid, body)
                body = parser.SubPattern(state, [(parser.SUBPATTERN, (gid, 0, 0, body))])
            rest = parser.SubPattern(state, [(parser.NOT_LITERAL, _NL)])
            newline = parser.SubPattern(state, [(parser.LITERAL, _NL)])
            body.append((parser.MAX_REPEAT, (0, parser.MAXREPEAT, rest)))
            body.append((parser.MAX_REPEAT, (0, 1, newline)))
            pattern = compiler.compile(body, re.MULTILINE)
            if isinstance(pattern, re.Pattern) and pattern.groups == max(groups - 1, 1):
                self.pattern = cast(re.Pattern[str], pattern)
        except Exception:  # declined, or a Python whose internals differ
            self.pattern = None
        finally:
            self._p = None

    def _local(self, sub: Any) -> Any:
        """``sub`` with no way left to consume a ``\\n`` (raises _Decline)."""
        p = self._p
        out: list[tuple[Any, Any]] = []
        for op, av in sub.data:
            if op is p.LITERAL:
                if av == _NL:
                    raise _Decline
                out.append((op, av))
            elif op is p.NOT_LITERAL:
                if av == _NL:
                    out.append((op, av))
                else:
                    out.append((p.IN, [(p.NEGATE, None), (p.LITERAL, av), (p.LITERAL, _NL)]))
            elif op is p.ANY:  # "." or, under DOTALL, anything: never a \n here
                out.append((p.NOT_LITERAL, _NL))
            elif op is p.IN:
                out += self._set(sub.state, av)
            elif op is p.AT:
                ats = {p.AT_BEGINNING_STRING: p.AT_BEGINNING, p.AT_END_STRING: p.AT_END}
                if av not in (p.AT_BEGINNING, p.AT_END, p.AT_BOUNDARY) and av not in ats:
                    raise _Decline
                out.append((op, ats.get(av, av)))
            elif op in (p.MAX_REPEAT, p.MIN_REPEAT, p.POSSESSIVE_REPEAT):
                out.append((op, (av[0], av[1], self._local(av[2]))))
            elif op is p.SUBPATTERN:
                out.append((op, (*av[:3], self._local(av[3]))))
            elif op is p.BRANCH:
                out.append((op, (av[0], [self._local(item) for item in av[1]])))
            elif op is p.ATOMIC_GROUP:
                out.append((op, self._local(av)))
            elif op in (p.ASSERT, p.ASSERT_NOT):
                out.append((op, (av[0], self._local(av[1]))))
            elif op is p.GROUPREF:  # what a group took: no \n
                out.append((op, av))
            elif op is p.GROUPREF_EXISTS:
                no = None if av[2] is None else self._local(av[2])
                out.append((op, (av[0], self._local(av[1]), no)))
            else:
                raise _Decline
        return self._p.SubPattern(sub.state, out)

    def _set(self, state: Any, items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        """A character set without ``\\n``."""
        p = self._p
        # each category that holds \n, and its complement (which does not)
        complement = {
            p.CATEGORY_SPACE: p.CATEGORY_NOT_SPACE,
            p.CATEGORY_NOT_DIGIT: p.CATEGORY_DIGIT,
            p.CATEGORY_NOT_WORD: p.CATEGORY_WORD,
            p.CATEGORY_LINEBREAK: p.CATEGORY_NOT_LINEBREAK,
        }
        negated = bool(items) and items[0][0] is p.NEGATE
        newline = False
        categories = set()
        for op, av in items[1:] if negated else items:
            if op is p.LITERAL:
                newline |= av == _NL
            elif op is p.RANGE:
                newline |= av[0] <= _NL <= av[1]
            elif op is p.CATEGORY and (av in complement or av in complement.values()):
                newline |= av in complement
                categories.add(av)
            else:
                raise _Decline
        if negated:
            return [(p.IN, items if newline else [*items, (p.LITERAL, _NL)])]
        if not newline:
            return [(p.IN, items)]
        if len(items) == 1 and items[0][0] is p.CATEGORY:  # \s as [^\S\n], \D as [^\d\n]...
            return [
                (p.IN, [(p.NEGATE, None), (p.CATEGORY, complement[items[0][1]]), (p.LITERAL, _NL)])
            ]
        if any(complement.get(category) in categories for category in categories):
            return [(p.NOT_LITERAL, _NL)]  # [\s\S] and the like: anything but \n
        no_newline = p.SubPattern(state, [(p.LITERAL, _NL)])
        return [(p.ASSERT_NOT, (1, no_newline)), (p.IN, items)]

    def _literal(self, tree: Any) -> None:
        """The longest run of plain characters that every match holds, in order; in
        lowercase (``folded``) when some of it is matched ignoring case."""
        p = self._p
        runs: list[tuple[str, bool, bool]] = []  # (characters, folded, first in the regex)
        run: list[str] = []
        folded = starts = False
        first = True

        def cut() -> None:
            nonlocal folded, starts
            runs.append(("".join(run), folded, starts))
            run.clear()
            folded = starts = False

        def walk(sub: Any, ignore_case: bool) -> None:
            nonlocal folded, starts, first
            for op, av in sub.data:
                if op is p.SUBPATTERN:  # a group: its characters follow the ones before
                    add, remove = av[1] & re.IGNORECASE, av[2] & re.IGNORECASE
                    walk(av[3], bool(add or (ignore_case and not remove)))
                    continue
                if op is p.LITERAL and av != _NL:
                    starts |= first
                    folded |= ignore_case
                    run.append(chr(av))
                else:
                    cut()
                first = False

        walk(tree, bool(tree.state.flags & re.IGNORECASE))
        cut()
        # A folded run is of use on ASCII text only, where lower() keeps every offset.
        usable = [run for run in runs if run[0] and (run[0].isascii() or not run[1])]
        if usable:
            literal, self.folded, starts = max(usable, key=lambda run: len(run[0]))
            self.literal = literal.lower() if self.folded else literal
            self.prefixed = starts and not self.folded


class _Batch:
    """The lines of one ``feed_lines`` call, each ended by ``\\n`` in ``text`` (None when a
    line holds a ``\\n``: not one that lines.py cuts, searched alone)."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = lines
        joined = "\n".join([*lines, ""])
        self.text = joined if joined.count("\n") == len(lines) else None
        self._lowered: str | None = None

    def lowered(self) -> str | None:
        """``text`` in lowercase when it is all ASCII (else None), made once."""
        if self._lowered is None and self.text is not None and self.text.isascii():
            self._lowered = self.text.lower()
        return self._lowered


class _Definition:
    """One MetricDefinition: its regex for a line, and its batch form for many lines."""

    def __init__(self, definition: MetricDefinition) -> None:
        self.name = definition.name
        self.pattern = re.compile(definition.regex)
        self.group = 1 if self.pattern.groups else 0  # the value: group 1, or the match
        form = _BatchForm(definition.regex)
        self.batch = form.pattern
        self.literal, self.folded, self.prefixed = form.literal, form.folded, form.prefixed
        # findall's value: the one group's text, or the first of several
        self.first: Any = None if self.batch is None or self.batch.groups == 1 else itemgetter(0)

    def value(self, match: re.Match[str]) -> float | None:
        text = match.group(self.group)
        return parse_metric_value(text) if text is not None else None

    def values(self, batch: _Batch) -> list[float]:
        """The value of every line that has one, in order."""
        lines, text = batch.lines, batch.text
        if text is None:
            return parse_metric_values(self._searched(lines))
        # (a regex that starts with its literal: re's own search skips to it as fast)
        if self.literal and (self.batch is None or not self.prefixed):
            haystack = batch.lowered() if self.folded else text
            if haystack is not None:
                count = haystack.count(self.literal)
                if not count:
                    return []
                if count * _CANDIDATE_SHARE < len(lines):
                    lines = _lines_holding(haystack, text, self.literal)
                    text = "\n".join([*lines, ""])
        if self.batch is None:
            return parse_metric_values(self._searched(lines))
        found = self.batch.findall(text)
        if not found:
            return []
        return _values(found if self.first is None else list(map(self.first, found)))

    def _searched(self, lines: Sequence[str]) -> list[str | None]:
        group = self.group
        return [m.group(group) for m in map(self.pattern.search, lines) if m is not None]


def _lines_holding(haystack: str, text: str, literal: str) -> list[str]:
    """The lines of ``text`` (each ended by ``\\n``) where ``haystack`` (``text`` or its
    lowercase) holds ``literal``, in order."""
    lines = []
    find, rfind = haystack.find, haystack.rfind
    at = find(literal)
    while at >= 0:
        end = find("\n", at + len(literal))  # there is one: the line's
        lines.append(text[rfind("\n", 0, at) + 1 : end])
        at = find(literal, end)
    return lines


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
        batch = _Batch(lines)
        found = []
        for definition in self._definitions:
            values = definition.values(batch)
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
