"""S3 buckets and their settings (each a separate PutBucket* call), and objects the program uploads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from preflight.provider_requests.base import (
    US_EAST_1,
    ApiRequest,
    Resolved,
    UnmappedResource,
    compact,
    label,
    physical_name,
    tag_list,
)


def _bucket(r: Resolved) -> list[ApiRequest]:
    name = physical_name(r, "bucket")
    region = r.region
    # Outside us-east-1, CreateBucket must name the region (else IllegalLocationConstraintException).
    where = {} if region == US_EAST_1 else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    requests = [ApiRequest("s3", "CreateBucket", {"Bucket": name, **where}, label(r),
                           {"Bucket": "s3-bucket-name"})]
    if r.inputs.get("tags"):
        requests.append(ApiRequest("s3", "PutBucketTagging", {
            "Bucket": name, "Tagging": {"TagSet": tag_list(r.inputs["tags"])}}, label(r)))
    return requests


def _bucket_ownership(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("s3", "PutBucketOwnershipControls", {
        "Bucket": r.inputs["bucket"],
        "OwnershipControls": {"Rules": [{"ObjectOwnership": r.inputs["rule"]["objectOwnership"]}]},
    }, label(r))]


def _public_access_block(r: Resolved) -> list[ApiRequest]:
    keys = ("blockPublicAcls", "ignorePublicAcls", "blockPublicPolicy", "restrictPublicBuckets")
    return [ApiRequest("s3", "PutPublicAccessBlock", {
        "Bucket": r.inputs["bucket"],
        "PublicAccessBlockConfiguration": {k[0].upper() + k[1:]: bool(r.inputs.get(k)) for k in keys},
    }, label(r))]


def _bucket_encryption(r: Resolved) -> list[ApiRequest]:
    rules = []
    for rule in r.inputs["rules"]:
        default = rule.get("applyServerSideEncryptionByDefault") or {}
        rules.append(compact({
            "ApplyServerSideEncryptionByDefault": compact({
                "SSEAlgorithm": default.get("sseAlgorithm"),
                "KMSMasterKeyID": default.get("kmsMasterKeyId")}),
            "BucketKeyEnabled": rule.get("bucketKeyEnabled"),
        }))
    return [ApiRequest("s3", "PutBucketEncryption", {
        "Bucket": r.inputs["bucket"], "ServerSideEncryptionConfiguration": {"Rules": rules}}, label(r))]


def _bucket_versioning(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("s3", "PutBucketVersioning", {
        "Bucket": r.inputs["bucket"],
        "VersioningConfiguration": {"Status": r.inputs["versioningConfiguration"]["status"]},
    }, label(r))]


def _bucket_lifecycle(r: Resolved) -> list[ApiRequest]:
    rules = []
    for rule in r.inputs["rules"]:
        noncurrent = rule.get("noncurrentVersionExpiration")
        abort = rule.get("abortIncompleteMultipartUpload")
        rules.append(compact({
            "ID": rule.get("id"), "Status": rule["status"],
            "Filter": {"Prefix": (rule.get("filter") or {}).get("prefix", "")},
            "NoncurrentVersionExpiration":
                {"NoncurrentDays": noncurrent["noncurrentDays"]} if noncurrent else None,
            "AbortIncompleteMultipartUpload":
                {"DaysAfterInitiation": abort["daysAfterInitiation"]} if abort else None,
        }))
    return [ApiRequest("s3", "PutBucketLifecycleConfiguration", {
        "Bucket": r.inputs["bucket"], "LifecycleConfiguration": {"Rules": rules}}, label(r))]


def _bucket_policy(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("s3", "PutBucketPolicy", {"Bucket": r.inputs["bucket"], "Policy": r.inputs["policy"]},
                       label(r), {"Policy": "s3-bucket-policy"})]


def _object_body(r: Resolved) -> bytes:
    """The bytes the provider uploads: a file asset's content, or the `content` string."""
    source = r.inputs.get("source")
    if source is not None:
        path = getattr(source, "path", None)
        if not isinstance(path, str):
            raise UnmappedResource(f"{label(r)}: only a file asset source is mapped, got {source!r}")
        return Path(path).read_bytes()
    return str(r.inputs.get("content", "")).encode()


def _bucket_object(r: Resolved) -> list[ApiRequest]:
    tags = r.inputs.get("tags") or {}
    return [ApiRequest("s3", "PutObject", compact({
        "Bucket": r.inputs["bucket"], "Key": r.inputs["key"], "Body": _object_body(r),
        "ContentType": r.inputs.get("contentType"),
        "ServerSideEncryption": r.inputs.get("serverSideEncryption"),
        "SSEKMSKeyId": r.inputs.get("kmsKeyId"),
        # PutObject takes tags as a URL-encoded query string (x-amz-tagging).
        "Tagging": urlencode(sorted(tags.items())) or None,
    }), label(r))]


MAPPINGS: dict[str, Callable[[Resolved], list[ApiRequest]]] = {
    "aws:s3/bucket:Bucket": _bucket,
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": _bucket_ownership,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": _public_access_block,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration":
        _bucket_encryption,
    "aws:s3/bucketVersioning:BucketVersioning": _bucket_versioning,
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": _bucket_lifecycle,
    "aws:s3/bucketPolicy:BucketPolicy": _bucket_policy,
    "aws:s3/bucketObjectv2:BucketObjectv2": _bucket_object,
}
