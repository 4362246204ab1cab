"""S3 (or any S3-compatible store) through boto3: the only package that imports it.

client.py    clients from S3Settings, shared within the process; credentials_environment
errors.py    botocore errors -> SourceError, at one boundary (``translated``)
uris.py      s3:// and AWS https URIs; SageMaker's S3Prefix naming rule
source.py    the reads: S3Source (a channel), open_s3_uri, list_objects
transfer.py  TransferManager downloads and uploads: one TransferConfig, one progress feed
folder.py    S3Folder, a key prefix as a Location (checkpoints, outputs): the writes
"""

from emulator.storage.s3.client import credentials_environment, s3_client
from emulator.storage.s3.folder import S3Folder, check_bucket, delete_objects
from emulator.storage.s3.source import S3Source, list_objects, open_s3_uri
from emulator.storage.s3.transfer import MULTIPART_THRESHOLD, upload_objects
from emulator.storage.s3.uris import S3Address, parse_s3_uri, relative_name

__all__ = [
    "MULTIPART_THRESHOLD",
    "S3Address",
    "S3Folder",
    "S3Source",
    "check_bucket",
    "credentials_environment",
    "delete_objects",
    "list_objects",
    "open_s3_uri",
    "parse_s3_uri",
    "relative_name",
    "s3_client",
    "upload_objects",
]
