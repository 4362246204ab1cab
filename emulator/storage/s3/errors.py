"""The one boundary where botocore and s3transfer errors become ``SourceError`` (with what to
do), or ``FileNotFoundError`` for a missing object where the caller asks for it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from s3transfer.exceptions import RetriesExceededError

from emulator.errors import SourceError

READ_PERMISSIONS = "s3:ListBucket and s3:GetObject"
WRITE_PERMISSIONS = "s3:ListBucket, s3:PutObject and s3:DeleteObject"

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})


@contextmanager
def translated(
    uri: str, missing: type[Exception] = SourceError, needs: str = READ_PERMISSIONS
) -> Iterator[None]:
    """Turn botocore errors into SourceError with what to do; a missing object into ``missing``.

    ``needs`` names the permissions an access-denied message asks for."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _NOT_FOUND_CODES and missing is not SourceError:
            raise missing(f"{uri}: no such object") from exc
        message = str(error.get("Message", ""))
        raise SourceError(client_error_text(uri, code, message, needs)) from exc
    except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
        raise SourceError(
            f"{uri}: no usable AWS credentials ({exc}); set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or choose a profile with AWS_PROFILE / --profile"
        ) from exc
    except ProfileNotFound as exc:
        raise SourceError(f"{uri}: {exc}; check AWS_PROFILE / --profile") from exc
    except BotoConnectionError as exc:  # botocore's message names the URL it tried
        raise SourceError(
            f"{uri}: cannot reach the S3 endpoint ({exc}); check that the server is running "
            "and the endpoint setting (--s3-endpoint-url, AWS_ENDPOINT_URL_S3)"
        ) from exc
    except BotoCoreError as exc:
        raise SourceError(f"{uri}: S3 request failed: {exc}") from exc
    except RetriesExceededError as exc:
        raise SourceError(
            f"{uri}: the download kept failing ({exc.last_exception}); try again"
        ) from exc


def client_error_text(uri: str, code: str, message: str, needs: str = READ_PERMISSIONS) -> str:
    """What an S3 error code means for ``uri``, and what to do about it."""
    if code == "NoSuchBucket":
        return (
            f"{uri}: the bucket does not exist; check the bucket name, and the endpoint "
            "(--s3-endpoint-url / AWS_ENDPOINT_URL_S3) when you use a local S3 server"
        )
    if code in _NOT_FOUND_CODES:
        return f"{uri}: no such object or bucket; check the S3 URI"
    if code in _CREDENTIAL_CODES:
        return (
            f"{uri}: the S3 server rejected the credentials ({code}); check AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY or the profile (AWS_PROFILE / --profile)"
        )
    if code in _DENIED_CODES:
        return (
            f"{uri}: access denied ({code}); the credentials in use need {needs} on this location"
        )
    if code == "PreconditionFailed":
        return f"{uri}: the object changed while it was being read; run the job again"
    return f"{uri}: S3 error {code or 'unknown'}: {message}"
