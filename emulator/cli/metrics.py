"""`emulator metrics NAME`: every point of every metric of a job, as a table, JSON or CSV, or
drawn in the terminal (``--plot``: plotext, imported only then).

The points are those of ``emulator.api.metrics``: the job's MetricDefinitions points and the
system metrics sampled while it ran (``system/memory_bytes``, ``system/cpu_percent``).
JSON and CSV are for programs and keep their shape: an object ``{"TrainingJobName", "Points"}``
whose points are ``{name, host, time, timestamp, value, source}``, and CSV rows of those
fields with a header.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from emulator import api

if TYPE_CHECKING:
    from emulator.observe.resources import MetricSample

FIELDS = ("name", "host", "time", "timestamp", "value", "source")
# rich lays out a table in memory first: beyond this many rows the listing is written as
# aligned text lines instead (a job may have a million points).
RICH_ROWS = 10_000
PLOT_HEIGHT = 16


@click.command()
@click.argument("name")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="How the points are listed (json and csv: for programs).",
)
@click.option("--plot", is_flag=True, help="Draw each metric in the terminal, a line per host.")
@click.option("--host", metavar="algo-N", help="Only this host's points.")
def metrics(name: str, output_format: str, plot: bool, host: str | None) -> None:
    """Print every point of a job's metrics: its MetricDefinitions points and the system
    metrics sampled while it ran (system/memory_bytes: memory used, without the file cache;
    system/cpu_percent: percent of one core).

    \b
    Examples:
      emulator metrics my-job
      emulator metrics my-job --format csv > points.csv
      emulator metrics my-job --plot --host algo-2
    """
    if plot and output_format != "table":
        raise click.UsageError("--plot draws the points; --format lists them: choose one")
    samples = api.metrics(name, host=host)
    if not samples:
        where = f" from {host}" if host else ""
        click.echo(f"Training job {name!r} has no metric points{where}.", err=True)
    if plot:
        if samples:
            click.echo(plot_text(samples, color=sys.stdout.isatty()), nl=False)
    elif output_format == "json":
        document = {"TrainingJobName": name, "Points": [s.as_dict() for s in samples]}
        click.echo(json.dumps(document, indent=2))
    elif output_format == "csv":
        click.echo(csv_text(samples), nl=False)
    elif samples:
        print_table(samples)


def csv_text(samples: Sequence[MetricSample]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for sample in samples:
        row = sample.as_dict()
        writer.writerow(
            [
                repr(row[field]) if field in ("timestamp", "value") else row[field]
                for field in FIELDS
            ]
        )
    return out.getvalue()


def shown_value(sample: MetricSample) -> str:
    """A value for people: memory in MiB/GiB, CPU in percent, others as they are."""
    from emulator.observe.resources import CPU_PERCENT, MEMORY_BYTES, format_bytes

    if sample.system and sample.name == MEMORY_BYTES:
        return format_bytes(sample.value)
    if sample.system and sample.name == CPU_PERCENT:
        return f"{sample.value:.1f} %"
    return f"{sample.value:g}"


def print_table(samples: Sequence[MetricSample]) -> None:
    rows = [(s.time, s.host, s.name, shown_value(s)) for s in samples]
    header = ("time", "host", "metric", "value")
    if len(rows) > RICH_ROWS:
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            for row in [header, *rows]
        ]
        click.echo("\n".join(line.rstrip() for line in lines))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*header, box=None)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # a metric name is any text, not markup
    Console(highlight=False).print(table)


def plot_text(samples: Sequence[MetricSample], *, color: bool) -> str:
    """Each metric drawn against the seconds since the job's first point, a line per host."""
    import plotext

    from emulator.observe.resources import MEMORY_BYTES

    start = min(sample.timestamp for sample in samples)
    width = max(40, min(shutil.get_terminal_size((100, 24)).columns, 160))
    figure = plotext.figure
    drawn: list[str] = []
    for metric in dict.fromkeys(sample.name for sample in samples):
        memory = metric == MEMORY_BYTES
        figure.clear()
        figure.plot_size(width, PLOT_HEIGHT)
        points = [sample for sample in samples if sample.name == metric]
        for host in dict.fromkeys(sample.host for sample in points):
            mine = [sample for sample in points if sample.host == host]
            xs = [sample.timestamp - start for sample in mine]
            ys = [sample.value / 1024**2 if memory else sample.value for sample in mine]
            figure.draw(figure.signal(xs, ys).label(host).lines())
        figure.title(f"{metric} (MiB)" if memory else metric)
        figure.label("seconds since the first point")
        drawn.append(figure.build().string(colorless=not color))
    return "".join(text + "\n" for text in drawn)
