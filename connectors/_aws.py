"""boto3 clients for the AWS connectors, configured the way the AWS CLI is.

Credentials, region and endpoint come from the standard chain: ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and the shared config files,
instance and container roles; ``AWS_REGION`` / ``AWS_DEFAULT_REGION``; ``AWS_ENDPOINT_URL`` and the
per-service ``AWS_ENDPOINT_URL_KINESIS`` / ``AWS_ENDPOINT_URL_S3`` (boto3 reads all of these
itself). A connector may also take ``endpoint=`` and ``region=`` options, which win.

Nothing here logs, prints or stores a credential: messages built by ``describe`` name the
service, the operation and AWS's error code and message, never keys or signed headers.
"""

from __future__ import annotations

import os
from typing import Any

from engine.errors import ConnectorError

DEFAULT_REGION = "us-east-1"
# Codes that mean "try again later", not "you made a mistake".
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KMSThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "503",
        "500",
    }
)


def client(
    service: str, *, endpoint: str | None = None, region: str | None = None, where: str, max_attempts: int = 3
) -> Any:
    """A boto3 client for ``service`` ("kinesis" or "s3").

    Args:
        service: the AWS service name.
        endpoint: an endpoint URL that overrides the environment (tests, LocalStack-like servers).
        region: a region that overrides the environment; default ``AWS_REGION``, then
            ``AWS_DEFAULT_REGION``, then the profile's, then us-east-1.
        where: the option or URI the connector came from, for messages.
        max_attempts: botocore's own tries per call; 1 for callers that retry themselves.

    Returns:
        The client. It makes no call yet.

    Raises:
        ConnectorError: if boto3 cannot build a client (a broken profile, say).
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    region = region or os.environ.get("AWS_REGION") or None
    config = Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        # S3: path-style URLs work with every S3-protocol server (moto, MinIO) and with AWS.
        s3={"addressing_style": "path"} if service == "s3" else None,
    )
    try:
        session = boto3.session.Session()
        region = region or session.region_name or DEFAULT_REGION
        return session.client(service, endpoint_url=endpoint or None, region_name=region, config=config)
    except BotoCoreError as err:
        raise ConnectorError(f"cannot set up the {service} client: {describe(err)}", where=where) from None
    except ValueError as err:  # e.g. a malformed endpoint URL
        raise ConnectorError(f"cannot set up the {service} client: {err}", where=where) from None


def error_code(err: BaseException) -> str:
    """AWS's error code for a botocore ``ClientError`` ("" for anything else)."""
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status:
            return str(status)
    return ""


def is_retryable(err: BaseException) -> bool:
    """True for throttling, server-side failures and connection trouble; False for mistakes."""
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

    if isinstance(err, (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ConnectionError)):
        return True
    code = error_code(err)
    return code in RETRYABLE_CODES or code.startswith("5")


def describe(err: BaseException) -> str:
    """One line about an AWS failure, without credentials or request signatures."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(err, NoCredentialsError):
        return "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        operation = getattr(err, "operation_name", "") or "request"
        code = error.get("Code") or err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        message = str(error.get("Message") or "").splitlines()[0] if error.get("Message") else ""
        return f"{operation} failed: {code}" + (f" ({message})" if message else "")
    if isinstance(err, BotoCoreError):
        # botocore's own messages name endpoints and files, never secrets.
        return str(err).splitlines()[0]
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")
