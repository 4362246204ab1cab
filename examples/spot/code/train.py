"""A training script that survives spot interruptions: it checkpoints after every epoch and,
when it starts, resumes after the last epoch its checkpoint holds.

SageMaker restores CheckpointConfig.S3Uri into /opt/ml/checkpoints before the container
starts, and uploads what is written there while the job runs. The checkpoint is written to a
temporary file and renamed, so an interruption never leaves a torn one behind."""

import json
import os
import signal
import sys
import time

CHECKPOINT = "/opt/ml/checkpoints/state.json"

# SageMaker stops a reclaimed instance's container with SIGTERM. As the container's first
# process this script would ignore it (PID 1 has no default handlers): exit at once instead;
# the epoch under way is done again by the next round.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

with open("/opt/ml/input/config/hyperparameters.json") as file:
    hyperparameters = json.load(file)
epochs = int(hyperparameters.get("epochs", "6"))
epoch_seconds = float(hyperparameters.get("epoch_seconds", "1"))

if os.path.exists(CHECKPOINT):
    with open(CHECKPOINT) as file:
        state = json.load(file)
    print(f"Resuming after epoch {state['epochs_done'][-1]}", flush=True)
else:
    state = {"epochs_done": []}
    print("No checkpoint: starting at epoch 1", flush=True)

with open("/opt/ml/input/data/train/numbers.txt") as file:
    numbers = [float(line) for line in file if line.strip()]

for epoch in range(len(state["epochs_done"]) + 1, epochs + 1):
    time.sleep(epoch_seconds)  # the epoch's work
    loss = sum(numbers) / len(numbers) / epoch
    state["epochs_done"].append(epoch)
    os.makedirs(os.path.dirname(CHECKPOINT), exist_ok=True)
    with open(CHECKPOINT + ".tmp", "w") as file:
        json.dump(state, file)
    os.replace(CHECKPOINT + ".tmp", CHECKPOINT)
    print(f"epoch={epoch} loss={loss:.4f}", flush=True)

with open("/opt/ml/model/epochs.json", "w") as file:
    json.dump(state, file)  # each epoch once, in order, if resuming works
print("Training done", flush=True)
