"""AWS credentials in the training container: never the user's own, unless the user opts in.

By default the container gets no AWS credentials at all (CONTRACT.md section 3), whatever the
emulator itself uses to reach S3. With ``--pass-aws-credentials``
(``RunOptions.pass_aws_credentials``) it gets the credentials boto3 resolves on the host at the
start of the job (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` for
temporary ones; a snapshot, not refreshed) and ``AWS_ENDPOINT_URL_S3`` when an endpoint is
set. Never with ``EnableNetworkIsolation``: asking for both is refused before anything exists.

With a store of the emulator's own (``RunOptions.container_s3``: the embedded store of
``emulator serve --s3``) every container gets that store's endpoint, as the address the job
network reaches, in both ``S3_ENDPOINT_URL`` (what the sagemaker-training toolkit reads) and
``AWS_ENDPOINT_URL_S3`` (what botocore reads), with the store's own local credentials and
region: never the user's, so ``pass_aws_credentials`` changes nothing then. A network-isolated
job gets nothing (it could not reach the store anyway).

The request's own ``Environment`` entries win over all of these (they are what the user wrote).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.config import S3Settings
from emulator.errors import RequestInvalid
from emulator.request.spec import JobSpec


@dataclass(frozen=True)
class ContainerS3:
    """An S3 store as the job's containers reach it: an endpoint their network can reach and
    credentials that belong to the store (never the user's AWS credentials)."""

    endpoint_url: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    region: str

    def environment(self) -> dict[str, str]:
        """The variables every container gets (see the module doc)."""
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
        }


def container_credentials(
    spec: JobSpec,
    pass_credentials: bool,
    settings: S3Settings | None = None,
    container_s3: ContainerS3 | None = None,
) -> dict[str, str]:
    """The AWS variables to add to every container's environment: ``container_s3``'s when
    given (nothing for a network-isolated job); else {} unless ``pass_credentials``, then the
    credentials the job's S3 ``settings`` resolve (profile, endpoint; None: the environment).

    Raises RequestInvalid for a network-isolated job asking for passed credentials,
    SourceError when no credentials can be resolved. Call it in preflight."""
    if container_s3 is not None:
        return {} if spec.network_isolation else container_s3.environment()
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
