"""``python -m emulator.cli``: the `emulator` command."""

from emulator.cli.main import main

main()
