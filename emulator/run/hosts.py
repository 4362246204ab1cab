"""The job's resources on the engine: its network and one container per host, made together and
removed together, each exactly once (``parallel.py`` says why at once).

    prepare_network     in the background from the Starting stage (the /opt/ml trees are
                        written and the data staged meanwhile); ``network()`` waits for it. A
                        single-host job without network isolation uses the engine's default
                        bridge, as ``docker run`` does (``engine/network.py``)
    create_containers   every host's at once; ``attach`` every host's output at once
    start               every host's at once; the hosts handed to the supervisor report how
                        their start went, and its ``sleep`` ends as soon as one exits
    release_network     once every container has stopped: the network, in the background
                        (a stopped container holds no endpoint on it)
    tear_down           the containers (then the network, if not going already), in the
                        background while the artifacts are packed and the rest of the cleanup
                        runs (staged data, work dir: the hosts have stopped)
    clean_up_containers the cleanup's first step: the containers, now, unless the teardown
                        removes them (a job that broke off: they may still run)
    finish              the cleanup's last step: the teardown waited for (its error raised
                        here), then whatever is left removed

With ``keep`` set (--keep: the job's work dir), the containers are labelled kept and never
removed: each "removal" kills a process still running and ends its output instead
(``Container.keep``); the network goes as always.

A container is registered here the moment it exists, so the cleanup removes it whatever happens
next (another host's failed creation, Ctrl-C). Every thread started here has ended once the
containers and the network are removed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from emulator.engine import Container, ContainerPlan, DockerEngine, Exit, JobNetwork, OutputStream
from emulator.engine.labels import LABEL_KEPT
from emulator.errors import EmulatorError
from emulator.run.parallel import Attempt, Background, at_once, first_error

WATCH_JOIN_SECONDS = 30.0  # a watcher ends when its container is removed; never wait forever
# A watched host is inspected only once its watcher saw it exit, and this often meanwhile (a
# safety net): the supervisor's 0.1 s ticks then cost no engine call.
WATCHED_CHECK_SECONDS = 1.0
# Each watcher holds an engine connection while its host runs (DockerEngine.POOL_SIZE).
WATCHED_HOSTS = 16


def resource_name(job: str, work: Path) -> str:
    """The job network's name, and its containers' names with the host's appended: the job's
    name and its work dir's random suffix (two runs of a name never clash)."""
    return f"sm-{job}-{work.name[-8:]}"


class JobHosts:
    """The network and containers of one job on ``engine``."""

    def __init__(self, engine: DockerEngine, job: str, *, hosts: int, isolated: bool) -> None:
        self.engine = engine
        self.keep: Path | None = None  # the work dir of a kept job (run/kept.py)
        self.job = job
        self.hosts = hosts
        self.isolated = isolated
        self.containers: list[Container] = []
        self._network: Background[JobNetwork] | None = None
        self._network_removed = False
        self._removed: set[str] = set()  # ids of the containers removed (or being removed)
        self._teardown: dict[str, Background[None]] = {}  # "containers", "network"
        self._watchers: list[threading.Thread] = []
        self._exited = threading.Event()
        self._lock = threading.Lock()

    # -- making ------------------------------------------------------------------------------

    def prepare_network(self, name: str) -> None:
        """Start making the job's network (named ``name`` if one is created), in the
        background."""
        self._network = Background(partial(self._make_network, name), "job-network")

    def _make_network(self, name: str) -> JobNetwork:
        if self.hosts == 1 and not self.isolated:
            bridge = self.engine.default_bridge()
            if bridge is not None:
                return bridge
        return self.engine.create_network(name, self.job, internal=self.isolated, hosts=self.hosts)

    def network(self) -> JobNetwork:
        """The job's network once it exists; what its making raised, raised here."""
        assert self._network is not None, "prepare_network first"
        return self._network.result()

    def create_containers(self, plans: Sequence[tuple[ContainerPlan, str]]) -> list[Container]:
        """Create (not start) every host's container, (plan, name) each, all at once."""
        if self.keep is not None:
            kept = {LABEL_KEPT: str(self.keep)}
            plans = [(replace(plan, labels={**plan.labels, **kept}), name) for plan, name in plans]
        calls = [partial(self.engine.create_container, plan, name) for plan, name in plans]
        attempts = at_once(calls, "create")
        with self._lock:
            self.containers += [a.value for a in attempts if a.value is not None]
        first_error(attempts)
        return [one.get() for one in attempts]

    def attach(self, containers: Sequence[Container]) -> list[OutputStream]:
        """Every container's output stream (``Container.attach``), all at once."""
        attempts = at_once([container.attach for container in containers], "attach")
        first_error(attempts)
        return [one.get() for one in attempts]

    def start(self, containers: Sequence[Container]) -> list[StartedHost]:
        """Start every container at once; the hosts for the supervisor (``started_hosts``).
        Each started container gets a watcher that wakes ``sleep`` when it exits."""
        attempts = at_once([container.start for container in containers], "start")
        watches: dict[str, threading.Event] = {}
        if len(containers) <= WATCHED_HOSTS:  # beyond: the supervisor's polls see the exits
            for container, one in zip(containers, attempts, strict=True):
                if one.error is None:
                    watches[container.host] = self._watch(container)
        return started_hosts(containers, attempts, watches)

    def _watch(self, container: Container) -> threading.Event:
        """A thread that waits for ``container``'s exit; the event is set once the wait has
        returned (the exit, the container's removal or an engine failure: inspect then)."""
        ended = threading.Event()

        def watch() -> None:
            try:
                self.engine.wait_for_exit(container)
            finally:
                ended.set()
                self._exited.set()

        watcher = threading.Thread(target=watch, name=f"exit-{container.host}", daemon=True)
        watcher.start()
        self._watchers.append(watcher)
        return ended

    def sleep(self, seconds: float) -> None:
        """The supervisor's pause between two looks at the hosts: ``seconds``, or less when a
        host exits meanwhile (its exit is then seen at once, not at the next poll)."""
        if self._exited.wait(seconds):
            self._exited.clear()

    # -- removing ----------------------------------------------------------------------------

    def release_network(self) -> None:
        """Every container has stopped: remove the network in the background from now on (a
        stopped container holds no endpoint on it), while the output is read to its end and
        the containers are removed."""
        if "network" not in self._teardown:
            self._teardown["network"] = Background(self._release_network, "remove-network")

    def tear_down(self) -> None:
        """Remove the containers, then the network (unless it is going already), in the
        background from now on."""
        containers = Background(partial(self._remove_containers, None), "remove-containers")
        self._teardown["containers"] = containers
        if "network" not in self._teardown:
            self._teardown["network"] = Background(
                partial(self._remove_network, containers), "remove-network"
            )

    def remove_containers(self, containers: Sequence[Container]) -> None:
        """Remove ``containers`` now (those never started: their output ends only then)."""
        self._remove_containers(containers)

    def clean_up_containers(self) -> None:
        """The cleanup's first step: every container not removed yet, removed now (they may
        still run: the job broke off), unless the teardown is removing them already (every
        host has stopped: the rest of the cleanup goes on meanwhile; ``finish`` waits)."""
        if "containers" not in self._teardown:
            self._remove_containers(None)

    def finish(self) -> None:
        """The cleanup's last step: the teardown waited for (its first error raised here),
        then whatever is left removed: containers, then the network (not the default bridge,
        not when its making failed)."""
        errors = [b.attempt().error for b in self._teardown.values()]
        self._teardown = {}
        self._remove_containers(None)
        self._remove_network()
        for error in errors:
            if error is not None:
                raise error

    def _remove_containers(self, containers: Sequence[Container] | None) -> None:
        with self._lock:
            chosen = self.containers if containers is None else containers
            todo = [c for c in chosen if c.id not in self._removed]
            self._removed.update(c.id for c in todo)
            everything = len(self._removed) == len(self.containers)
        try:
            keep = self.keep is not None
            calls = [container.keep if keep else container.remove for container in todo]
            first_error(at_once(calls, "remove"))
        finally:
            if everything:  # every watcher's container is gone: its wait has returned
                for watcher in self._watchers:
                    watcher.join(WATCH_JOIN_SECONDS)

    def _release_network(self) -> None:
        """The early removal: a refusal (an endpoint the engine has not released yet) is
        left to ``finish``, which tries again once the containers are gone."""
        try:
            self._remove_network()
        except EmulatorError:
            with self._lock:
                self._network_removed = False

    def _remove_network(self, after: Background[None] | None = None) -> None:
        if after is not None:
            after.attempt()  # the containers first (their failure is reported with them)
        with self._lock:
            if self._network is None or self._network_removed:
                return
            self._network_removed = True
        made = self._network.attempt()
        if made.value is not None and not made.value.shared:
            self.engine.remove_network(made.value.name)


class StartedHost:
    """A host as the supervisor drives it (``run.supervisor.Host``), whose container was
    started with the others: ``start`` reports how that went."""

    def __init__(
        self,
        container: Container,
        attempt: Attempt[None],
        watch_ended: threading.Event | None = None,
    ) -> None:
        self.container = container
        self._attempt = attempt
        self._watch_ended = watch_ended  # None: not watched, inspected at every poll
        self._next_check = 0.0

    @property
    def host(self) -> str:
        return self.container.host

    @property
    def started(self) -> bool:
        return self._attempt.error is None

    def start(self) -> None:
        self._attempt.get()  # StartFailed (or an engine problem) as the start raised it

    def exited(self) -> Exit | None:
        if self._watch_ended is not None and not self._watch_ended.is_set():
            now = time.monotonic()
            if now < self._next_check:
                return None  # still running: its watcher has not seen an exit
            self._next_check = now + WATCHED_CHECK_SECONDS
        return self.container.exited()

    def signal(self, signal_name: str) -> None:
        self.container.signal(signal_name)

    def removed_from_outside(self) -> bool:
        return self.container.removed_from_outside()


def started_hosts(
    containers: Sequence[Container],
    attempts: Sequence[Attempt[None]],
    watches: dict[str, threading.Event] | None = None,
) -> list[StartedHost]:
    """The hosts that started (in host order), then those that could not: the supervisor
    starts them in that order, so when it meets the first that could not start it knows every
    host that runs, and stops them as the completion rule says."""
    watches = watches or {}
    hosts = [
        StartedHost(c, a, watches.get(c.host)) for c, a in zip(containers, attempts, strict=True)
    ]
    return [h for h in hosts if h.started] + [h for h in hosts if not h.started]
