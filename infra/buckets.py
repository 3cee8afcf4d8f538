"""What every bucket of the stack gets: owner-enforced objects (no ACLs) and no public access."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

s3 = aws.s3


def make_private(prefix: str, bucket: s3.Bucket, opts: pulumi.ResourceOptions) -> None:
    """Ownership controls and a public access block for `bucket`, named `<prefix>-ownership` and
    `<prefix>-public-access` (the logical names stacks already have in their state)."""
    s3.BucketOwnershipControls(f"{prefix}-ownership", s3.BucketOwnershipControlsArgs(
        bucket=bucket.id, rule=s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
    ), opts=opts)
    s3.BucketPublicAccessBlock(f"{prefix}-public-access", s3.BucketPublicAccessBlockArgs(
        bucket=bucket.id, block_public_acls=True, block_public_policy=True,
        ignore_public_acls=True, restrict_public_buckets=True,
    ), opts=opts)
