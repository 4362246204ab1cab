"""The one boundary between Docker's errors and the emulator's.

Every engine call of the package runs inside ``engine_call``. What the call raised (an answer
of the engine: ``EngineAnswer``; or no answer: ``EngineUnreachable``, the engine gone, the
socket closed, a timeout; ``http.py``, docker-py's errors translated by ``dockerpy.py``) is
first classified by ``classify`` into a ``Kind``; the call then either tolerates that kind
(the caller reads ``call.failure`` and decides: a container already gone is "removed", a
subnet taken meanwhile is chosen again) or raises ``EnvironmentProblem`` with the call's
wording, or else the default one. No transport exception leaves the package: the caller sees
a ``Failure`` made of the kind and the engine's words only.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import TracebackType

from emulator.engine.http import EngineAnswer, EngineDenied, EngineError
from emulator.errors import EnvironmentProblem, running_user

# What an engine call can raise: the engine's answers and transport failures (engine gone,
# socket closed, timeout).
ENGINE_ERRORS = (EngineError,)
# A 404 naming an image rather than a container or network (docker-py's reading of it).
_IMAGE_WORDS = (
    "no such image",
    "not found: does not exist or no pull access",
    "repository does not exist",
    "was found but does not match the specified platform",
)


class Kind(enum.Enum):
    """What a failed engine call means, decided once from the error itself."""

    IMAGE_MISSING = "image missing"  # 404 "No such image"
    NOT_FOUND = "not found"  # 404: the container or network does not exist (any more)
    NO_GPU_DRIVER = "no GPU driver"  # the engine has no device driver for a GPU request
    SUBNET_TAKEN = "subnet taken"  # the network's subnet overlaps one in use
    CONFLICT = "conflict"  # 409: not running, a removal already under way, ...
    REFUSED = "refused"  # any other answer of the engine
    UNREACHABLE = "unreachable"  # no answer: no engine, connection closed, timeout

    @property
    def answered(self) -> bool:
        """Whether the engine answered (refused the call) rather than failed to answer."""
        return self is not Kind.UNREACHABLE


ANSWERED = frozenset(kind for kind in Kind if kind.answered)
GONE = frozenset({Kind.NOT_FOUND, Kind.IMAGE_MISSING})  # 404: what the call names is not there
EVERY_KIND = frozenset(Kind)


def classify(exc: BaseException) -> Kind:
    """The translation table: the first matching row wins."""
    if not isinstance(exc, EngineAnswer):
        return Kind.UNREACHABLE
    if exc.status_code == 404:
        image = any(words in exc.explanation.lower() for words in _IMAGE_WORDS)
        return Kind.IMAGE_MISSING if image else Kind.NOT_FOUND
    text = str(exc.explanation or exc)
    if "could not select device driver" in text:
        return Kind.NO_GPU_DRIVER
    if "overlap" in text.lower():
        return Kind.SUBNET_TAKEN
    if exc.status_code == 409:
        return Kind.CONFLICT
    return Kind.REFUSED


@dataclass(frozen=True)
class Failure:
    """A failed engine call as the package sees it: its kind and the engine's words."""

    kind: Kind
    detail: str  # the engine's explanation where it gave one, else the error
    error: str  # the whole error (with the HTTP status, for an answer)
    denied: bool = False  # the socket refused this user (file permissions)

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        error = str(exc)
        detail = str(getattr(exc, "explanation", None) or error)
        return cls(classify(exc), detail, error, isinstance(exc, EngineDenied))


Wording = Callable[[Failure], str | None]


def default_message(what: str, failure: Failure) -> str:
    return (
        f"The Docker engine failed to {what}: {failure.detail}; check that it is running "
        "(`docker info`)"
    )


class engine_call:  # lower case: used like a function, `with engine_call(...) as call:`
    """Run one engine call (the ``with`` body) through the translation table.

    ``what`` completes "The Docker engine failed to ..."; ``wording`` may word a failure
    otherwise (None keeps the default); kinds in ``tolerate`` are not raised: the body ends
    there and ``failure`` says what happened."""

    def __init__(
        self, what: str, *, tolerate: Collection[Kind] = (), wording: Wording | None = None
    ) -> None:
        self.what = what
        self.tolerate = frozenset(tolerate)
        self.wording = wording
        self.failure: Failure | None = None

    def __enter__(self) -> engine_call:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, ENGINE_ERRORS):
            return False
        failure = Failure.of(exc)
        if failure.kind in self.tolerate:
            self.failure = failure
            return True
        worded = self.wording(failure) if self.wording is not None else None
        raise EnvironmentProblem(worded or default_message(self.what, failure)) from exc


def no_engine(where: str, failure: Failure | None = None) -> str:
    """What to do when the engine at ``where`` does not answer: start it, or (the socket
    refused this user) get the right to use it."""
    if failure is not None and failure.denied:
        user = running_user()
        return (
            f"The Docker engine at {where} refuses the user running the emulator ({user}): "
            "permission denied on its socket. Add the user to the docker group (`sudo usermod "
            "-aG docker $USER`, then log in again), or run the emulator as root"
        )
    return (
        f"No Docker engine answers at {where}: start one (`make engine` as root, or "
        "`sudo systemctl start docker`) or point DOCKER_HOST at it"
    )


def missing_image(image: str) -> str:
    """Where a missing image could come from; a digest reference (``repo@sha256:...``) names
    a registry's image, which no local build, tag or load can take as its name."""
    heading = (
        f"Image {image!r} is not present on the local Docker engine, and the emulator never pulls"
    )
    if "@" not in image:
        return (
            f"{heading}. Build it (`docker build -t {image} .`), load it "
            "(`docker load -i image.tar`), or pull it yourself first"
        )
    repository = image.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    return (
        f"{heading}. A digest reference names an image pushed to a registry and cannot be "
        f"built locally: pull it yourself first (`docker pull {image}`), or build or load the "
        f"image under a tag (`docker build -t {repository}:local .`, "
        "`docker load -i image.tar`) and give that tag"
    )


def no_gpu_driver(host: str, failure: Failure) -> str:
    return (
        f"The Docker engine cannot give {host} its GPUs ({failure.detail}): install "
        "the NVIDIA container toolkit for the engine, or run with --gpus 0"
    )
