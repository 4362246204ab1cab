"""Lifecycle defaults that need no engine: SageMaker's stop grace, and cleanup that a signal
cannot cut short."""

from __future__ import annotations

import os
import signal
import time

from click.testing import CliRunner

from emulator.cli.main import main
from emulator.run.options import DEFAULT_STOP_GRACE_SECONDS, RunOptions
from emulator.run.signals import signals_deferred


def test_the_stop_grace_defaults_to_sagemakers_120_seconds() -> None:
    assert DEFAULT_STOP_GRACE_SECONDS == 120
    assert RunOptions().stop_grace_seconds == 120
    help_text = CliRunner().invoke(main, ["run", "--help"]).output
    assert "--stop-grace SECONDS" in help_text
    assert "[default: 120" in help_text


def test_signals_during_cleanup_are_held_back_then_reported() -> None:
    before = signal.getsignal(signal.SIGINT)
    with signals_deferred() as arrived:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # handlers run here: no KeyboardInterrupt
    assert arrived == [signal.SIGINT, signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is before
