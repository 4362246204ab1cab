"""Integration tests of the demo training image (containers/demo, `make demo`) with the
emulator's pytest plugin: the fixtures ``emulator`` and ``emulator_s3`` come with the package.

    pytest examples/pytest                            # skipped when no Docker engine answers
    pytest examples/pytest --emulator-require-engine  # in CI: no engine is an error
"""

import json
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "demo"
REQUEST = DEMO / "request.json"  # the request `make demo` runs: File mode, local channels
TRAIN_ROWS = sum(p.read_bytes().count(b"\n") for p in (DEMO / "data" / "train").glob("*.csv"))


def test_file_mode_fits_the_line(emulator):
    result = emulator.run(REQUEST)

    assert result.status == "Completed" and result.exit_code == 0
    assert result.metrics["train:loss"] < 0.05
    assert result.series["train:loss"][0] > result.series["train:loss"][-1]
    model = json.loads(result.model_files()["model.json"])
    assert [round(w) for w in model["weights"]] == [3, -2]
    assert "saved model" in result.logs()


def test_bad_data_fails_with_the_reason_the_image_wrote(emulator, tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "bad.csv").write_text("1.0,x,2.0\n")

    result = emulator.run(REQUEST, channels={"train": tmp_path / "train"})

    assert result.exit_code == 1
    assert result.failure_reason == (
        "AlgorithmError: bad.csv: not a number in row ['1.0', 'x', '2.0'], exit code: 1"
    )


def test_pipe_mode_is_not_silently_file_mode(emulator):
    # train.py reads files: in Pipe mode, as in SageMaker, there are none, only FIFOs.
    result = emulator.run(REQUEST, input_mode="Pipe")

    assert result.status == "Failed"
    assert "no training rows found" in result.failure_reason


def test_pipe_mode_streams_the_channel(emulator):
    count_rows = (
        "import pathlib; data = pathlib.Path('/opt/ml/input/data/train_0').read_bytes(); "
        "print(f'rows={data.count(10)}')"
    )
    result = emulator.run(
        REQUEST,
        input_mode="Pipe",
        entrypoint=["python3", "-c", count_rows],
        metrics={"rows": "rows=([0-9]+)"},
    )

    assert result.status == "Completed"
    assert result.metrics["rows"] == TRAIN_ROWS


def test_two_hosts_train_side_by_side(emulator):
    result = emulator.run(REQUEST, instance_count=2, hyperparameters={"epochs": 5})

    assert result.status == "Completed"
    for host in ("algo-1", "algo-2"):
        assert result.logs(host).startswith(f"host {host} of ['algo-1', 'algo-2']")
        assert sum(p.host == host for p in result.points if p.name == "train:loss") == 5


def test_s3_channels_and_output(emulator, emulator_s3):
    channels = {
        name: emulator_s3.put(f"s3://demo-data/{name}/", DEMO / "data" / name)
        for name in ("train", "validation")
    }
    emulator_s3.bucket("demo-output")

    result = emulator.run(REQUEST, channels=channels, output="s3://demo-output/jobs")

    assert result.status == "Completed"
    assert result.record["ModelArtifacts"]["S3ModelArtifacts"].startswith("s3://demo-output/")
    assert "model.json" in result.model_files()
    archive = emulator_s3.get(result.record["ModelArtifacts"]["S3ModelArtifacts"])
    assert archive[:2] == b"\x1f\x8b"  # gzip
