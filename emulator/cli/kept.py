"""`emulator shell` and `emulator rm`: looking inside and removing what a job run with --keep
kept (README "Kept jobs and post-mortem shells"); `emulator prune --kept` is in main.py."""

from __future__ import annotations

import sys

import click

from emulator import api


@click.command()
@click.argument("name")
@click.option("--host", metavar="algo-N", help="The host to look at (default: the first).")
def shell(name: str, host: str | None) -> None:
    """Open a shell in a kept job's host, after the job ended: a new container of its image
    with that host's /opt/ml tree and environment, removed when the shell exits.

    Exits with the shell's status; a job not run with --keep is refused (exit 2).
    """
    sys.exit(api.shell(name, host=host))


@click.command()
@click.argument("name")
def rm(name: str) -> None:
    """Remove what a kept job holds: its containers and work dir. Its record stays."""
    removed = api.remove_kept(name)
    for line in removed:
        click.echo(f"removed {line}")
    click.echo(
        f"{len(removed)} kept resource(s) of {name} removed; its record, logs and metrics "
        f"stay (`emulator describe {name}`)"
    )
