"""Distributed jobs on the real engine: hosts algo-1..N that reach each other by name from their
first instant, instance groups, data distribution in every input mode, the completion rule, and
logs and metrics of every host."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulator.state.store import JobStore
from tests.fixtures.cli import EMULATOR
from tests.fixtures.jobs import PROBE, JobRunner, channel, unique_name

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]

MakeFiles = Callable[[dict[str, bytes]], Path]
SCRIPT_PARTS = 5  # Environment values are at most 512 characters: scripts travel in parts


def shell(script: str, mode: str = "File") -> dict[str, Any]:
    """Members running ``script`` with the probe image's busybox sh on every host."""
    chunks = [script[i : i + 500] for i in range(0, len(script), 500)]
    assert len(chunks) <= SCRIPT_PARTS, "script too long"
    joined = "".join(f"$SCRIPT_{n}" for n in range(SCRIPT_PARTS))
    return {
        "AlgorithmSpecification": {
            "TrainingImage": PROBE,
            "TrainingInputMode": mode,
            "ContainerEntrypoint": ["sh", "-c", f'eval "{joined}"'],
        },
        "Environment": {f"SCRIPT_{n}": chunk for n, chunk in enumerate(chunks)},
    }


def cluster(count: int, instance_type: str = "ml.m5.large") -> dict[str, Any]:
    return {"InstanceType": instance_type, "InstanceCount": count, "VolumeSizeInGB": 1}


def host_files(jobs: JobRunner, record: dict[str, Any], host: str) -> dict[str, str]:
    """What ``host`` wrote under /opt/ml/model/<host>/, by file name."""
    prefix = f"{host}/"
    return {
        name[len(prefix) :]: content.decode()
        for name, content in jobs.model(record).items()
        if name.startswith(prefix)
    }


# -- names --------------------------------------------------------------------------------


RESOLVE = """
me=$(hostname); out=/opt/ml/model/$me; mkdir -p $out
cp /opt/ml/input/config/resourceconfig.json $out/
for h in algo-1 algo-2 algo-3; do
  for try in 1 2 3 4 5 6 7 8 9 10; do
    if ping -c 1 -W 1 $h > $out/ping-$h 2>&1; then echo ok > $out/reach-$h; break; fi
  done
done
sleep 3
"""
# Hosts start at once, not in order: a peer may not run yet (its ping is retried), and one done
# with its pings stays up a moment so that a later starter reaches it too.


def test_every_host_resolves_and_reaches_every_other_from_its_first_instant(
    jobs: JobRunner,
) -> None:
    record = jobs.run(jobs.request(ResourceConfig=cluster(3), **shell(RESOLVE)))
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    hosts = ["algo-1", "algo-2", "algo-3"]
    for me in hosts:
        seen = host_files(jobs, record, me)
        for peer in hosts:
            # ping resolves once, at its start: the peer may not run yet (algo-1 starts first),
            # yet its name is already known ("bad address" otherwise).
            assert "bad address" not in seen[f"ping-{peer}"], (me, peer, seen[f"ping-{peer}"])
            assert f"PING {peer} (" in seen[f"ping-{peer}"]
            assert seen.get(f"reach-{peer}") == "ok\n", (me, peer, seen[f"ping-{peer}"])
        config = json.loads(seen["resourceconfig.json"])
        assert config["current_host"] == me
        assert config["hosts"] == hosts
        assert config["current_group_name"] == "homogeneousCluster"
        assert config["instance_groups"] == [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": "ml.m5.large",
                "hosts": hosts,
            }
        ]


# -- instance groups and distribution -----------------------------------------------------

SHARED = {"a.txt": b"shared a\n", "b/c.txt": b"shared c\n" * 1000}
SHARDED = {f"p{n}.bin": os.urandom(1000 + n) for n in range(5)}
WORKERS = {f"w{n}.bin": os.urandom(2000 + n) for n in range(3)}

READ_CHANNELS = """
me=$(hostname); out=/opt/ml/model/$me; mkdir -p $out
cp /opt/ml/input/config/*.json $out/
cd /opt/ml/input/data; ls > $out/listing
for c in shared sharded workers; do
  if [ -p ${c}_0 ]; then sha256sum < ${c}_0 | cut -d ' ' -f 1 > $out/$c
  elif [ -d $c ]; then
    (cd $c && find . -type f | sort | while read -r f; do sha256sum "$f"; done) > $out/$c
  fi
done
"""

GROUPS = {
    "InstanceGroups": [
        {"InstanceGroupName": "lead", "InstanceType": "ml.m5.large", "InstanceCount": 1},
        {"InstanceGroupName": "workers", "InstanceType": "ml.c5.xlarge", "InstanceCount": 2},
    ],
    "VolumeSizeInGB": 1,
}


def distributed(
    source: Path, name: str, distribution: str, groups: list[str] | None = None
) -> dict[str, Any]:
    ch = channel(name, source)
    s3 = ch["DataSource"]["S3DataSource"]
    s3["S3DataDistributionType"] = distribution
    if groups:
        s3["InstanceGroupNames"] = groups
    return ch


def seen_as(mode: str, files: dict[str, bytes], names: list[str]) -> str:
    """What READ_CHANNELS reports for a host that got ``names`` of ``files``."""
    if mode == "Pipe":  # one epoch: the objects in key order, concatenated
        return hashlib.sha256(b"".join(files[n] for n in sorted(names))).hexdigest() + "\n"
    lines = sorted((f"./{n}", hashlib.sha256(files[n]).hexdigest()) for n in names)
    return "".join(f"{digest}  {path}\n" for path, digest in lines)


@pytest.mark.parametrize("mode", ["File", "Pipe", "FastFile"])
def test_instance_groups_and_distribution_in_every_input_mode(
    jobs: JobRunner, make_files: MakeFiles, mode: str
) -> None:
    channels = [
        distributed(make_files(SHARED), "shared", "FullyReplicated"),
        distributed(make_files(SHARDED), "sharded", "ShardedByS3Key"),
        distributed(make_files(WORKERS), "workers", "ShardedByS3Key", ["workers"]),
    ]
    request = jobs.request(
        ResourceConfig=GROUPS, InputDataConfig=channels, **shell(READ_CHANNELS, mode)
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert jobs.leftovers(request["TrainingJobName"]) == []

    # Sorted keys dealt round-robin over the hosts that get the channel (plan.py).
    expected = {
        "algo-1": {"shared": list(SHARED), "sharded": ["p0.bin", "p3.bin"]},
        "algo-2": {
            "shared": list(SHARED),
            "sharded": ["p1.bin", "p4.bin"],
            "workers": ["w0.bin", "w2.bin"],
        },
        "algo-3": {"shared": list(SHARED), "sharded": ["p2.bin"], "workers": ["w1.bin"]},
    }
    sources = {"shared": SHARED, "sharded": SHARDED, "workers": WORKERS}
    groups = {"algo-1": "lead", "algo-2": "workers", "algo-3": "workers"}
    for host, wanted in expected.items():
        seen = host_files(jobs, record, host)
        for name, names in wanted.items():
            assert seen[name] == seen_as(mode, sources[name], names), (host, name)
        config = json.loads(seen["inputdataconfig.json"])
        assert sorted(config) == sorted(wanted), host  # only the channels this host gets
        for name in wanted:
            distribution = "FullyReplicated" if name == "shared" else "ShardedByS3Key"
            assert config[name]["TrainingInputMode"] == mode
            assert config[name]["S3DistributionType"] == distribution
        assert ("workers" in seen["listing"]) == (host != "algo-1")
        resources = json.loads(seen["resourceconfig.json"])
        assert resources == {
            "current_host": host,
            "current_instance_type": "ml.m5.large" if host == "algo-1" else "ml.c5.xlarge",
            "current_group_name": groups[host],
            "hosts": ["algo-1", "algo-2", "algo-3"],
            "instance_groups": [
                {
                    "instance_group_name": "lead",
                    "instance_type": "ml.m5.large",
                    "hosts": ["algo-1"],
                },
                {
                    "instance_group_name": "workers",
                    "instance_type": "ml.c5.xlarge",
                    "hosts": ["algo-2", "algo-3"],
                },
            ],
            "network_interface_name": "eth0",
        }


# -- the completion rule ------------------------------------------------------------------

FIRST_FAILURE = """
me=$(hostname)
case $me in
  algo-2) sleep 0.3; printf 'algo-2 broke' > /opt/ml/output/failure; exit 2 ;;
  algo-1) trap 'printf "algo-1 stopped" > /opt/ml/output/failure; echo t > /opt/ml/model/term-1;
                exit 1' TERM ;;
  algo-3) trap 'echo t > /opt/ml/model/term-3; exit 143' TERM ;;
esac
sleep 60 & wait $!
"""


def test_the_first_host_to_fail_fails_the_job_and_the_others_are_stopped(
    jobs: JobRunner,
) -> None:
    started = time.monotonic()
    record = jobs.run(
        jobs.request(ResourceConfig=cluster(3), **shell(FIRST_FAILURE)), stop_grace_seconds=30
    )
    assert time.monotonic() - started < 20  # the others ended on SIGTERM, not on SIGKILL
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == ("Failed", "Failed")
    # algo-1 failed too (exit 1, with its own failure file), but after algo-2 and because of
    # the stop: the reason is the first failure's, by exit time, not the lowest host's.
    assert record["FailureReason"] == "AlgorithmError: algo-2 broke, exit code: 2 (host algo-2)"
    model = jobs.model(record)
    assert model["term-1"] == b"t\n" and model["term-3"] == b"t\n"


def test_a_job_completes_only_when_every_host_exits_zero(jobs: JobRunner) -> None:
    script = "[ $(hostname) = algo-2 ] && sleep 1; echo done > /opt/ml/model/$(hostname)"
    record = jobs.run(jobs.request(ResourceConfig=cluster(2), **shell(script)))
    assert record["TrainingJobStatus"] == "Completed"
    assert set(jobs.model(record)) == {"algo-1", "algo-2"}  # algo-1's early exit ended nothing


# -- logs and metrics of every host -------------------------------------------------------


def test_cli_interleaves_host_logs_live_with_a_prefix_and_keeps_every_hosts_metrics(
    jobs: JobRunner,
) -> None:
    name = unique_name("logs")
    script = (
        "n=${HOSTNAME#algo-}; echo start $HOSTNAME; echo loss=0.$n; sleep 1.5; "
        "echo end $HOSTNAME; echo loss=0.0$n"
    )
    env = {**os.environ, "EMULATOR_HOME": str(jobs.home), "TMPDIR": str(jobs.work_root)}
    command = [
        *EMULATOR,
        "run",
        "--quiet",
        "--image",
        PROBE,
        "--entrypoint",
        "sh",
        "--entrypoint",
        "-c",
        "--entrypoint",
        script,
        "--instance-count",
        "2",
        "--metric",
        "loss=loss=([0-9.]+)",
        "--job-name",
        name,
        "--output",
        str(jobs.output),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("[algo-")]
    starts = [i for i, line in enumerate(lines) if " start " in line]
    ends = [i for i, line in enumerate(lines) if " end " in line]
    assert lines[starts[0]] in ("[algo-1] start algo-1", "[algo-2] start algo-2")
    assert {lines[i] for i in starts} == {"[algo-1] start algo-1", "[algo-2] start algo-2"}
    assert {lines[i] for i in ends} == {"[algo-1] end algo-1", "[algo-2] end algo-2"}
    assert max(starts) < min(ends)  # live: both hosts started before either ended
    points = JobStore(jobs.home).metrics(name)
    assert sorted((p.host, p.value) for p in points) == [
        ("algo-1", 0.01),
        ("algo-1", 0.1),
        ("algo-2", 0.02),
        ("algo-2", 0.2),
    ]
    assert jobs.leftovers(name) == []


def test_a_host_ignoring_sigterm_is_killed_after_the_grace_while_the_others_save(
    jobs: JobRunner,
) -> None:
    script = """
    if [ $(hostname) = algo-1 ]; then trap 'echo ignoring' TERM
    else trap 'echo t > /opt/ml/model/term-$(hostname); exit 143' TERM; fi
    echo up; while :; do sleep 1; done
    """
    request = jobs.request(
        ResourceConfig=cluster(2), StoppingCondition={"MaxRuntimeInSeconds": 1}, **shell(script)
    )
    started = time.monotonic()
    record = jobs.run(request, stop_grace_seconds=2)
    assert time.monotonic() - started < 30
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == (
        "Stopped",
        "MaxRuntimeExceeded",
    )
    assert jobs.model(record) == {"term-algo-2": b"t\n"}
    assert ("algo-1", "ignoring") in jobs.logs
    assert jobs.leftovers(request["TrainingJobName"]) == []


def test_the_models_of_every_host_are_merged_algo_1_winning_clashes(jobs: JobRunner) -> None:
    script = "me=$(hostname); echo $me > /opt/ml/model/weights; echo $me > /opt/ml/model/$me"
    record = jobs.run(jobs.request(ResourceConfig=cluster(3), **shell(script)))
    assert jobs.model(record) == {
        "weights": b"algo-1\n",
        "algo-1": b"algo-1\n",
        "algo-2": b"algo-2\n",
        "algo-3": b"algo-3\n",
    }
    assert any("weights" in notice and "algo-1" in notice for notice in jobs.notices)


def test_a_host_that_cannot_start_fails_the_job_and_is_named(jobs: JobRunner) -> None:
    threads_before = set(threading.enumerate())
    request = jobs.request(
        ResourceConfig=cluster(2),
        AlgorithmSpecification={
            "TrainingImage": "sagemaker-emulator/no-train:latest",
            "TrainingInputMode": "File",
        },
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Failed"
    assert record["FailureReason"] == (
        'AlgorithmError: exec: "train": executable file not found in $PATH, exit code: 127 '
        "(host algo-1)"
    )
    assert jobs.leftovers(request["TrainingJobName"]) == []
    # algo-2 never started: the stream of its output ended when it was removed.
    assert set(threading.enumerate()) - threads_before == set()
