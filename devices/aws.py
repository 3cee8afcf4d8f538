"""The AWS IoT client (standard retry mode) and one-line wording of everything botocore can raise.

`AWS_ENDPOINT_URL` (honoured by botocore itself) points the CLI at a moto server in tests and demos.
The region is resolved here, not left to botocore: botocore reads only `AWS_DEFAULT_REGION`, while
AWS's docs, the AWS CLI v2 and the other SDKs use `AWS_REGION` (and let it win), which is what users set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from devices.errors import DeviceError

IoTClient = Any  # boto3's IoT client (no stubs installed; the calls used are few and tested)
MAX_ATTEMPTS = 8
THROTTLING = {"ThrottlingException", "TooManyRequestsException", "Throttling", "RequestLimitExceeded"}
DENIED = {"AccessDeniedException", "AccessDenied", "UnauthorizedException", "UnrecognizedClientException"}
T = TypeVar("T")
# Most specific first: AWS_REGION wins over AWS_DEFAULT_REGION, as in the AWS CLI v2 and other SDKs.
REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")
NO_REGION = ("no AWS region set: pass --region, or set AWS_REGION (or AWS_DEFAULT_REGION), "
             "or a region in your AWS profile")


def resolve_region(region: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """`--region`, else the first of `REGION_VARIABLES` set; None lets botocore read the profile."""
    if region:
        return region
    return next((environ[name] for name in REGION_VARIABLES if environ.get(name)), None)


def iot_client(region: str | None = None, max_pool_connections: int = 10) -> IoTClient:
    """An IoT client that retries throttling and transient errors with backoff (boto3 standard mode)."""
    return aws_client("iot", region, max_pool_connections)


def aws_client(service: str, region: str | None = None, max_pool_connections: int = 10,
               endpoint_url: str | None = None) -> Any:
    """A client of `service` (iot, iot-data, dynamodb) with the same retries, timeouts and region rule."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        max_pool_connections=max_pool_connections,
        connect_timeout=10,
        read_timeout=30,
    )
    try:
        return boto3.session.Session().client(service, region_name=resolve_region(region), config=config,
                                              endpoint_url=endpoint_url)
    except NoRegionError:
        raise DeviceError(NO_REGION) from None


def error_code(exc: BaseException) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) else ""


def describe_error(exc: BaseException) -> str:
    """One line for the operator; never includes request bodies (they may hold a CSR, not a key)."""
    if isinstance(exc, DeviceError):
        return str(exc)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if isinstance(exc, NoRegionError):
        return NO_REGION
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach AWS IoT: {exc}"
    if isinstance(exc, ClientError):
        code, op = error_code(exc), exc.operation_name
        message = str(exc.response.get("Error", {}).get("Message", "")).strip() or code
        if code in DENIED:
            return f"AWS denied {op}: {message} (check the IAM permissions of these credentials)"
        if code in THROTTLING:
            return f"AWS IoT throttled {op} after {MAX_ATTEMPTS} attempts: retry later or use fewer --workers"
        return f"AWS IoT {op} failed: {code}: {message}"
    if isinstance(exc, BotoCoreError):
        return f"AWS call failed: {exc}"
    if isinstance(exc, OSError):
        return f"cannot write {exc.filename or 'the bundle'}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def aws_errors() -> Iterator[None]:
    """Turn botocore/OS errors into DeviceError so the CLI prints one line."""
    try:
        yield
    except (BotoCoreError, ClientError, OSError) as exc:
        raise DeviceError(describe_error(exc)) from exc


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) == "ResourceNotFoundException"


def retry_conflicts(call: Callable[[], T], attempts: int = 5, delay_s: float = 0.5) -> T:
    """Retry a call that AWS IoT refuses while a detach is still propagating (DeleteConflictException)."""
    for attempt in range(attempts):
        try:
            return call()
        except ClientError as exc:
            if error_code(exc) != "DeleteConflictException" or attempt == attempts - 1:
                raise
            time.sleep(delay_s * (attempt + 1))
    raise AssertionError("unreachable")
