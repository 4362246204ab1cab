"""``python -m emulator``: the `emulator` command."""

from emulator.cli.main import main

main()
