"""README.md documents every command and every option of the CLI, as `emulator --help` lists
them (the help text is the source of truth; the README must keep up with it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from emulator.cli.main import main

README = Path(__file__).parents[2] / "README.md"


def help_text(*command: str) -> str:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def section(text: str, title: str) -> list[str]:
    """The lines of a help section (`Options:`, `Commands:`), up to the next blank line."""
    lines = text.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [line for line in lines if line.strip()]


def commands() -> list[str]:
    return [line.split()[0] for line in section(help_text(), "Commands")]


def long_options(*command: str) -> list[str]:
    """Every long option of a command's help, --help excepted."""
    found = re.findall(
        r"(?<![\w-])--[a-z][a-z0-9-]*", "\n".join(section(help_text(*command), "Options"))
    )
    return [option for option in dict.fromkeys(found) if option != "--help"]


def mentioned(text: str, token: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text) is not None


def test_the_help_is_parsed_into_commands_and_options() -> None:
    # Guards the checks below against passing vacuously on a help layout they cannot read.
    assert {"run", "validate", "describe", "list", "stop", "prune"} <= set(commands())
    assert {"--image", "--channel", "--json", "--replace"} <= set(long_options("run"))
    assert long_options() == ["--version"]


@pytest.mark.parametrize("command", commands())
def test_every_command_and_its_options_are_in_the_readme(command: str) -> None:
    readme = README.read_text() if README.exists() else ""
    assert f"emulator {command}" in readme
    missing = [option for option in long_options(command) if not mentioned(readme, option)]
    assert missing == [], f"README.md does not mention {missing} of `emulator {command}`"


def test_the_global_options_are_in_the_readme() -> None:
    readme = README.read_text() if README.exists() else ""
    missing = [option for option in long_options() if not mentioned(readme, option)]
    assert missing == [], f"README.md does not mention {missing} of `emulator`"
