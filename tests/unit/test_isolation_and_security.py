"""EnableNetworkIsolation and the security defaults: no way out of an isolated job's network
(its hosts still reach each other) and no credentials; containers never privileged, in no host
namespace, FastFile data read-only; sensitive host paths refused as channels, checkpoints or
output unless allowed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emulator.plan.safety import exposes, sensitive_paths


@pytest.mark.parametrize(
    ("location", "secret"),
    [
        ("~/.ssh", "~/.ssh"),
        ("~/.ssh/id_ed25519", "~/.ssh"),
        ("~", "~/.aws"),  # a parent exposes what it holds
        ("~/.aws", "~/.aws"),
        ("/etc", "/etc"),
        ("/etc/ssl", "/etc"),
        ("/", "/etc"),
        ("/var/run/docker.sock", "/var/run/docker.sock"),
        ("/run", "/run/docker.sock"),
        ("/proc/self", "/proc"),
    ],
)
def test_sensitive_paths_inside_and_above_are_recognised(
    user_home: Path, location: str, secret: str
) -> None:
    found = exposes(Path(os.path.expanduser(location)), sensitive_paths())
    assert found is not None
    if secret.startswith("~"):
        assert found == Path(os.path.expanduser(secret))
    elif location != "/":
        assert found in (Path(secret), Path(os.path.realpath(secret)))


@pytest.mark.parametrize("location", ["~/project/data", "/srv/data", "/var/tmp/x", "/opt/ml-data"])
def test_ordinary_paths_are_not_sensitive(user_home: Path, location: str) -> None:
    assert exposes(Path(os.path.expanduser(location)), sensitive_paths()) is None
