"""MetricDefinitions: log lines in, metric time series out.

Rules (CONTRACT.md section 5, our documented choices where SageMaker says nothing):
- every definition's regex is applied to every line of stdout and stderr, with ``re.search``
  (the regex may match anywhere in the line); only the first match in a line counts;
- the value is the first capture group, or the whole match when the regex has no group;
- the value must parse as a finite float (``1``, ``-0.5``, ``3e-4``; not ``nan``, ``inf``,
  ``1_000`` or ``0x10``): anything else is skipped, as CloudWatch would reject it;
- every accepted value is kept with its timestamp; ``FinalMetricDataList`` holds the LAST value
  of each metric, in definition order.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from emulator.request.spec import MetricDefinition
from emulator.state.store import MetricPoint

_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def parse_metric_value(text: str) -> float | None:
    """The float in ``text`` (surrounding blanks allowed), or None when it is not a plain,
    finite decimal number."""
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


class MetricsCollector:
    """Applies MetricDefinitions to log lines; safe to feed from one thread per host."""

    def __init__(self, definitions: Sequence[MetricDefinition]) -> None:
        self._patterns = [(d.name, re.compile(d.regex)) for d in definitions]
        self._order = [d.name for d in definitions]
        self._series: dict[str, list[MetricPoint]] = {}
        self._lock = threading.Lock()

    def feed(
        self, line: str, host: str = "algo-1", timestamp: float | None = None
    ) -> list[MetricPoint]:
        """Match one line; store and return the points it yields."""
        if not self._patterns:
            return []
        stamp = time.time() if timestamp is None else timestamp
        points = []
        for name, pattern in self._patterns:
            match = pattern.search(line)
            if match is None:
                continue
            text = match.group(1) if pattern.groups else match.group(0)
            value = parse_metric_value(text) if text is not None else None
            if value is not None:
                points.append(MetricPoint(name, value, stamp, host))
        if points:
            with self._lock:
                for point in points:
                    self._series.setdefault(point.name, []).append(point)
        return points

    def series(self) -> dict[str, list[MetricPoint]]:
        with self._lock:
            return {name: list(points) for name, points in self._series.items()}

    def final_metric_data_list(self) -> list[dict[str, Any]]:
        """DescribeTrainingJob's FinalMetricDataList: the last value of each metric."""
        with self._lock:
            final = []
            for name in dict.fromkeys(self._order):
                points = self._series.get(name)
                if points:
                    last = points[-1]
                    stamp = datetime.fromtimestamp(last.timestamp, UTC).isoformat()
                    final.append({"MetricName": name, "Value": last.value, "Timestamp": stamp})
            return final
