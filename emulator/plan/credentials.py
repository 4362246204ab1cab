"""AWS credentials in the training container: never, unless the user opts in.

By default the container gets no AWS credentials at all (CONTRACT.md section 3), whatever the
emulator itself uses to reach S3. With ``--pass-aws-credentials``
(``RunOptions.pass_aws_credentials``) it gets the credentials boto3 resolves on the host at the
start of the job (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` for
temporary ones; a snapshot, not refreshed) and ``AWS_ENDPOINT_URL_S3`` when an endpoint is
set. Never with ``EnableNetworkIsolation``: asking for both is refused before anything exists.
The request's own ``Environment`` entries win over these (they are what the user wrote).
"""

from __future__ import annotations

from emulator.config import S3Settings
from emulator.errors import RequestInvalid
from emulator.request.spec import JobSpec


def container_credentials(
    spec: JobSpec, pass_credentials: bool, settings: S3Settings | None = None
) -> dict[str, str]:
    """The AWS variables to add to every container's environment ({} unless opted in), as
    the job's S3 ``settings`` resolve them (profile, endpoint; None: from the environment).

    Raises RequestInvalid for a network-isolated job, SourceError when no credentials can be
    resolved. Call it in preflight."""
    if not pass_credentials:
        return {}
    if spec.network_isolation:
        raise RequestInvalid(
            [
                "EnableNetworkIsolation: a network-isolated job gets no AWS credentials, as in "
                "SageMaker; drop --pass-aws-credentials (RunOptions.pass_aws_credentials) or "
                "EnableNetworkIsolation"
            ]
        )
    from emulator.storage.s3 import credentials_environment

    return credentials_environment(settings)
