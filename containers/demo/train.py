"""A small, honest SageMaker training script: fits y = w.x + b on CSV files by gradient descent.

Reads every CSV under /opt/ml/input/data/train (and validation, when given), hyperparameters
from /opt/ml/input/config/hyperparameters.json (epochs, learning_rate), prints one line of
metrics per epoch for MetricDefinitions to pick up, and writes the model to /opt/ml/model.
On bad input it writes /opt/ml/output/failure and exits 1, as SageMaker expects.
"""

import csv
import json
import signal
import sys
from pathlib import Path

ML = Path("/opt/ml")
stop_requested = False


def on_sigterm(signum, frame):
    global stop_requested
    stop_requested = True
    print("SIGTERM received: saving the model and stopping", flush=True)


def fail(message):
    (ML / "output").mkdir(parents=True, exist_ok=True)
    (ML / "output" / "failure").write_text(message)
    print(f"ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def load_rows(channel):
    rows = []
    directory = ML / "input" / "data" / channel
    for path in sorted(directory.rglob("*.csv")):
        with open(path, newline="") as handle:
            for record in csv.reader(handle):
                if record and not record[0].startswith("#"):
                    try:
                        rows.append([float(value) for value in record])
                    except ValueError:
                        fail(f"{path.name}: not a number in row {record}")
    return rows


def mse(rows, weights, bias):
    total = 0.0
    for *features, target in rows:
        error = sum(w * x for w, x in zip(weights, features, strict=True)) + bias - target
        total += error * error
    return total / max(len(rows), 1)


def main():
    signal.signal(signal.SIGTERM, on_sigterm)
    config = ML / "input" / "config"
    hyperparameters = json.loads((config / "hyperparameters.json").read_text())
    resources = json.loads((config / "resourceconfig.json").read_text())
    epochs = int(hyperparameters.get("epochs", "20"))
    learning_rate = float(hyperparameters.get("learning_rate", "0.05"))
    print(f"host {resources['current_host']} of {resources['hosts']}", flush=True)

    train = load_rows("train")
    if not train:
        fail("no training rows found in /opt/ml/input/data/train")
    validation = load_rows("validation") if (ML / "input/data/validation").exists() else []
    width = len(train[0]) - 1
    weights, bias = [0.0] * width, 0.0
    print(f"training on {len(train)} rows, {width} features, {epochs} epochs", flush=True)

    for epoch in range(1, epochs + 1):
        grad_w, grad_b = [0.0] * width, 0.0
        for *features, target in train:
            error = sum(w * x for w, x in zip(weights, features, strict=True)) + bias - target
            grad_w = [g + 2 * error * x / len(train) for g, x in zip(grad_w, features, strict=True)]
            grad_b += 2 * error / len(train)
        weights = [w - learning_rate * g for w, g in zip(weights, grad_w, strict=True)]
        bias -= learning_rate * grad_b
        line = f"epoch={epoch} train_loss={mse(train, weights, bias):.6f}"
        if validation:
            line += f" validation_loss={mse(validation, weights, bias):.6f}"
        print(line, flush=True)
        if stop_requested:
            break

    model_dir = ML / "model"
    (model_dir / "model.json").write_text(json.dumps({"weights": weights, "bias": bias}))
    print(f"saved model: weights={[round(w, 3) for w in weights]} bias={bias:.3f}", flush=True)


if __name__ == "__main__":
    main()
