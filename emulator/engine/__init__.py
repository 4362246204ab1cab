"""Everything the emulator asks of Docker (docker-py is imported nowhere else, and here only
for an engine that is not at a unix socket).

http.py       HTTP over the engine's unix socket (standard library): pool, streams, attach
client.py     the Engine API calls and bodies; picks http.py or dockerpy.py by DOCKER_HOST
dockerpy.py   tcp://, ssh:// and TLS engines through docker-py (imported only for them)
errors.py     the one table translating the engine's errors into EmulatorError
labels.py     the labels (job, host, owner pid) of every container and network
network.py    job networks: subnet choice, fixed addresses, /etc/hosts, removal
container.py  one host's container, its plan, its output, how it ended
archive.py    reading a directory as the engine (root) does, for files a root container wrote
docker.py     DockerEngine: the client, images, GPUs, CPUs, creating containers
reaper.py     removing the resources of emulator processes that are gone (prune)
terminal.py   the user's terminal on a container, through the docker CLI (exec, --shell, shell)
debug.py      published ports, an image's command, a running job's containers (exec)
"""

from emulator.engine.container import (
    EXIT_REMOVED,
    Container,
    ContainerPlan,
    Exit,
    Mount,
    OutputStream,
    StartFailed,
)
from emulator.engine.docker import DockerEngine
from emulator.engine.labels import LABEL_HOST, LABEL_JOB, LABEL_PID, job_labels
from emulator.engine.network import JobNetwork

__all__ = [
    "EXIT_REMOVED",
    "LABEL_HOST",
    "LABEL_JOB",
    "LABEL_PID",
    "Container",
    "ContainerPlan",
    "DockerEngine",
    "Exit",
    "JobNetwork",
    "Mount",
    "OutputStream",
    "StartFailed",
    "job_labels",
]
