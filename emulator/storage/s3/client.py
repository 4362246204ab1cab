"""boto3 clients from ``emulator.config.S3Settings`` (endpoint, profile, region, retries,
timeouts), shared within the process; and the resolved credentials for a container."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from emulator.config import S3Settings
from emulator.errors import SourceError
from emulator.storage.s3.errors import translated

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_clients: dict[tuple[Any, ...], S3Client] = {}
_clients_lock = threading.Lock()


def s3_client(settings: S3Settings | None = None) -> S3Client:
    """A client for ``settings`` (default: from the environment), shared within the process.

    The cache key includes every AWS_* variable, so changed credentials or endpoints in the
    environment give a fresh client; and the process id, so a forked child builds its own.
    """
    settings = settings or S3Settings.from_environ()
    aws_env = frozenset((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))
    cache_key = (settings, aws_env, os.getpid())
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            if len(_clients) > 16:
                _clients.clear()
            client = _clients[cache_key] = _new_client(settings)
    return client


def _session(settings: S3Settings) -> boto3.session.Session:
    """A session with the settings' profile and region, and their explicit credentials (when
    given, they win over the profile's and the environment's)."""
    return boto3.session.Session(
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        profile_name=settings.profile,
        region_name=settings.region,
    )


def _new_client(settings: S3Settings) -> S3Client:
    session = _session(settings)
    config = Config(
        retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        # One connection per transfer thread plus a few for concurrent open()/read_range().
        max_pool_connections=settings.max_concurrency + 8,
        user_agent_extra="sagemaker-training-emulator",
    )
    return session.client("s3", endpoint_url=settings.endpoint_url, config=config)


def credentials_environment(settings: S3Settings | None = None) -> dict[str, str]:
    """The credentials boto3 resolves now (environment, profile, SSO, instance role...) as
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, plus AWS_ENDPOINT_URL_S3
    when an endpoint is set: what ``--pass-aws-credentials`` gives the container.

    A snapshot: temporary credentials are not refreshed inside the container."""
    settings = settings or S3Settings.from_environ()
    with translated("--pass-aws-credentials"):
        session = _session(settings)
        credentials = session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise SourceError(
            "--pass-aws-credentials: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or choose a profile with AWS_PROFILE / --profile"
        )
    environment = {
        "AWS_ACCESS_KEY_ID": frozen.access_key,
        "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
    }
    if frozen.token:
        environment["AWS_SESSION_TOKEN"] = frozen.token
    if settings.endpoint_url:
        environment["AWS_ENDPOINT_URL_S3"] = settings.endpoint_url
    return environment
