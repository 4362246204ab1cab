"""pytest fixtures for integration tests of training images (the ``pytest11`` plugin).

    def test_trains(emulator, tmp_path):
        result = emulator.run(image="my-training:latest", channels={"train": tmp_path / "data"})
        assert result.status == "Completed"
        assert "model.json" in result.model_files()

plugin.py   the fixtures ``emulator`` and ``emulator_s3``, the ``--emulator-require-engine`` option
runner.py   ``EmulatorRunner`` (what ``emulator`` gives) and ``JobResult``
s3.py       ``S3Store`` (what ``emulator_s3`` gives): the embedded S3 store of `serve --s3`

The plugin module is loaded by every pytest run of an environment holding the package, so it
imports nothing heavy until a fixture is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.testing.runner import EmulatorRunner, JobResult, MetricPoint
    from emulator.testing.s3 import S3Store

__all__ = ["EmulatorRunner", "JobResult", "MetricPoint", "S3Store"]

_LAZY = {
    "EmulatorRunner": "emulator.testing.runner",
    "JobResult": "emulator.testing.runner",
    "MetricPoint": "emulator.testing.runner",
    "S3Store": "emulator.testing.s3",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'emulator.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
