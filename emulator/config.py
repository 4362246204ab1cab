"""Typed settings of the emulator's S3 client, with their defaults in one place.

Precedence follows AWS conventions: a CLI flag (``--s3-endpoint-url``, ``--profile``,
``--region``) or ``RunOptions.s3`` / ``RunOptions.region`` > AWS's own environment variables >
boto3's config files > the defaults below. A job's settings (``effective_s3_settings``) are
passed down to every S3 user of the job (sources, Pipe items, the FastFile child through its
JSON configuration, outputs, checkpoints, --pass-aws-credentials); nothing is written to
``os.environ``.
This module does not import boto3.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from emulator.errors import SourceError

DEFAULT_REGION = "us-east-1"

# The state directory: job records, metric points and log files (state/store.py).
ENV_HOME = "EMULATOR_HOME"
APP_DIR = "sagemaker-emulator"
ENV_CACHE = "EMULATOR_CACHE"

RetryMode = Literal["standard", "adaptive", "legacy"]

# Retries: botocore's standard mode (exponential backoff with jitter, retries 5xx, throttling
# and connection errors). 5 attempts keep a typo'd endpoint from hanging for a minute.
DEFAULT_RETRY_MODE: RetryMode = "standard"
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
# Parallel requests of one File-mode download; also sizes the client's connection pool.
DEFAULT_MAX_CONCURRENCY = 16

ENV_ENDPOINT_URL = "AWS_ENDPOINT_URL_S3"
ENV_IGNORE_ENDPOINTS = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
ENV_MAX_CONCURRENCY = "EMULATOR_S3_MAX_CONCURRENCY"


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3. ``None`` leaves the value to boto3's own resolution."""

    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    retry_mode: RetryMode = DEFAULT_RETRY_MODE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    # Explicit credentials (the embedded store's own, `emulator serve --s3`): they win over
    # the profile and the environment. Kept out of repr, so they never reach a log line.
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        """The settings the environment gives, read the way botocore reads them."""
        env = os.environ if environ is None else environ
        ignore_endpoints = env.get(ENV_IGNORE_ENDPOINTS, "").lower() == "true"
        return cls(
            endpoint_url=None if ignore_endpoints else env.get(ENV_ENDPOINT_URL) or None,
            # botocore: AWS_DEFAULT_PROFILE wins over AWS_PROFILE.
            profile=env.get("AWS_DEFAULT_PROFILE") or env.get("AWS_PROFILE") or None,
            region=region_from_environ(env),
            retry_mode=_retry_mode(env.get("AWS_RETRY_MODE")),
            max_attempts=_positive_int(env, "AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS),
            max_concurrency=_positive_int(env, ENV_MAX_CONCURRENCY, DEFAULT_MAX_CONCURRENCY),
        )


def region_from_environ(environ: Mapping[str, str] | None = None) -> str | None:
    """The region the environment names, or None.

    botocore (1.44) reads only AWS_DEFAULT_REGION for a client's region (AWS_REGION only in its
    Lambda-style "auto" defaults mode); AWS_REGION is what other SDKs and SageMaker containers
    use, accepted here as a fallback so that either variable alone works."""
    env = os.environ if environ is None else environ
    return env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or None


def resolve_region(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The job's region (ARNs, the containers' AWS_REGION): an explicit value (``--region``,
    ``RunOptions.region``) > AWS_DEFAULT_REGION > AWS_REGION > DEFAULT_REGION. The one place
    that resolves it, so the S3 client and the job never disagree about the environment."""
    return explicit or region_from_environ(environ) or DEFAULT_REGION


def effective_s3_settings(
    settings: S3Settings | None = None,
    region: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> S3Settings:
    """The S3 settings a job uses: ``settings`` (``RunOptions.s3``), or the environment's when
    None; the job's ``region`` (``RunOptions.region``) fills in a region the given settings do
    not name, and beats the environment's. Nothing is written to ``os.environ``."""
    if settings is not None:
        return settings if settings.region or not region else replace(settings, region=region)
    found = S3Settings.from_environ(environ)
    return replace(found, region=region) if region else found


def s3_settings_from_flags(
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> S3Settings:
    """The settings of the CLI's ``--s3-endpoint-url``/``--profile``/``--region``: the
    environment's, with the values given (not None) taking precedence. Writes nothing."""
    if endpoint_url is not None:
        _check_endpoint_url(endpoint_url)
    found = S3Settings.from_environ(environ)
    return replace(
        found,
        endpoint_url=endpoint_url if endpoint_url is not None else found.endpoint_url,
        profile=profile if profile is not None else found.profile,
        region=region if region is not None else found.region,
    )


def _check_endpoint_url(endpoint_url: str) -> None:
    if not endpoint_url.startswith(("http://", "https://")):
        raise SourceError(
            f"S3 endpoint URL {endpoint_url!r} must start with http:// or https:// "
            "(for example http://127.0.0.1:8333)"
        )


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Derived data worth keeping between runs (the compiled request schema): EMULATOR_CACHE,
    else $XDG_CACHE_HOME/sagemaker-emulator, else ~/.cache/sagemaker-emulator."""
    env = os.environ if environ is None else environ
    if env.get(ENV_CACHE):
        return Path(env[ENV_CACHE]).expanduser()
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / APP_DIR


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """The state directory: EMULATOR_HOME, else $XDG_STATE_HOME/sagemaker-emulator, else
    ~/.local/state/sagemaker-emulator."""
    env = os.environ if environ is None else environ
    if env.get(ENV_HOME):
        return Path(env[ENV_HOME]).expanduser()
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / APP_DIR


_RETRY_MODES: dict[str, RetryMode] = {
    "standard": "standard",
    "adaptive": "adaptive",
    "legacy": "legacy",
}


def _retry_mode(value: str | None) -> RetryMode:
    return _RETRY_MODES.get(value or "", DEFAULT_RETRY_MODE)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise SourceError(f"{name}={raw!r} must be a positive integer")
    return value
