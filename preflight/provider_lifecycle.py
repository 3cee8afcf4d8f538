"""What pulumi-aws (= the Terraform AWS provider) calls for each resource type besides its create
requests (`preflight.provider_requests`): reads (after every create and on refresh), in-place updates, tags
and deletes. `preflight.deployer_policy` grants these; a type missing here is an error there, not a gap.
"""

from __future__ import annotations

_TAGS_IOT = ("iot:ListTagsForResource", "iot:TagResource", "iot:UntagResource")
_BUCKET_SETTING_READS = ("s3:ListBucket",)
# What the provider (pulumi-aws = the Terraform AWS provider) calls besides the create requests: reads
# (after create and on refresh), updates in place, tags and deletes.
LIFECYCLE: dict[str, tuple[str, ...]] = {
    "aws:iot/thingType:ThingType": (
        "iot:DescribeThingType",
        "iot:DeprecateThingType",
        "iot:DeleteThingType",
        *_TAGS_IOT,
    ),
    "aws:iot/thingGroup:ThingGroup": (
        "iot:DescribeThingGroup",
        "iot:UpdateThingGroup",
        "iot:DeleteThingGroup",
        *_TAGS_IOT,
    ),
    "aws:iot/thing:Thing": (
        "iot:DescribeThing",
        "iot:UpdateThing",
        "iot:DeleteThing",
        "iot:ListThingPrincipals",
    ),
    "aws:iot/thingGroupMembership:ThingGroupMembership": (
        "iot:ListThingGroupsForThing",
        "iot:RemoveThingFromThingGroup",
    ),
    "aws:iot/policy:Policy": (
        "iot:GetPolicy",
        "iot:ListPolicyVersions",
        "iot:CreatePolicyVersion",
        "iot:DeletePolicyVersion",
        "iot:SetDefaultPolicyVersion",
        "iot:DeletePolicy",
        *_TAGS_IOT,
    ),
    # The provider's aws_iot_policy_attachment reads the target's policies and detaches on delete
    # (create: AttachPolicy, in preflight.provider_requests.iot).
    "aws:iot/policyAttachment:PolicyAttachment": (
        "iot:ListAttachedPolicies",
        "iot:DetachPolicy",
    ),
    "aws:iot/provisioningTemplate:ProvisioningTemplate": (
        "iot:DescribeProvisioningTemplate",
        "iot:UpdateProvisioningTemplate",
        "iot:CreateProvisioningTemplateVersion",
        "iot:ListProvisioningTemplateVersions",
        "iot:DeleteProvisioningTemplateVersion",
        "iot:DeleteProvisioningTemplate",
        *_TAGS_IOT,
    ),
    "aws:iot/topicRule:TopicRule": (
        "iot:GetTopicRule",
        "iot:ReplaceTopicRule",
        "iot:DeleteTopicRule",
        *_TAGS_IOT,
    ),
    "aws:lambda/permission:Permission": ("lambda:GetPolicy", "lambda:RemovePermission"),
    # The stack's pre-provisioning hook (infra/provisioning_hook.py).
    "aws:lambda/function:Function": (
        "lambda:GetFunction",
        "lambda:GetFunctionCodeSigningConfig",
        "lambda:ListVersionsByFunction",
        "lambda:UpdateFunctionCode",
        "lambda:UpdateFunctionConfiguration",
        "lambda:DeleteFunction",
        "lambda:ListTags",
        "lambda:TagResource",
        "lambda:UntagResource",
    ),
    "aws:iam/role:Role": (
        "iam:GetRole",
        "iam:ListRolePolicies",
        "iam:ListAttachedRolePolicies",
        "iam:ListInstanceProfilesForRole",
        "iam:UpdateRole",
        "iam:UpdateRoleDescription",
        "iam:UpdateAssumeRolePolicy",
        "iam:PutRolePermissionsBoundary",  # a changed boundary; never DeleteRolePermissionsBoundary
        "iam:TagRole",
        "iam:UntagRole",
        "iam:DeleteRole",
    ),
    "aws:iam/rolePolicy:RolePolicy": ("iam:GetRolePolicy", "iam:DeleteRolePolicy"),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": (
        "iam:ListAttachedRolePolicies",
        "iam:DetachRolePolicy",
    ),
    "aws:kinesis/stream:Stream": (
        "kinesis:DescribeStreamSummary",
        "kinesis:DescribeStream",
        "kinesis:ListTagsForStream",
        "kinesis:AddTagsToStream",
        "kinesis:RemoveTagsFromStream",
        "kinesis:UpdateShardCount",
        "kinesis:UpdateStreamMode",
        "kinesis:DecreaseStreamRetentionPeriod",
        "kinesis:StopStreamEncryption",
        "kinesis:DeleteStream",
    ),
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": (
        "firehose:DescribeDeliveryStream",
        "firehose:ListTagsForDeliveryStream",
        "firehose:UpdateDestination",
        "firehose:StartDeliveryStreamEncryption",
        "firehose:StopDeliveryStreamEncryption",
        "firehose:TagDeliveryStream",
        "firehose:UntagDeliveryStream",
        "firehose:DeleteDeliveryStream",
    ),
    "aws:cloudwatch/logGroup:LogGroup": (
        "logs:DescribeLogGroups",
        "logs:ListTagsForResource",
        "logs:TagResource",
        "logs:UntagResource",
        "logs:AssociateKmsKey",
        "logs:DisassociateKmsKey",
        "logs:DeleteRetentionPolicy",
        "logs:DeleteLogGroup",
    ),
    "aws:cloudwatch/logStream:LogStream": ("logs:DescribeLogStreams", "logs:DeleteLogStream"),
    "aws:cloudwatch/eventBus:EventBus": (
        "events:DescribeEventBus",
        "events:ListTagsForResource",
        "events:TagResource",
        "events:UntagResource",
        "events:DeleteEventBus",
    ),
    "aws:pipes/pipe:Pipe": (
        "pipes:DescribePipe",
        "pipes:ListTagsForResource",
        "pipes:UpdatePipe",
        "pipes:StartPipe",
        "pipes:StopPipe",
        "pipes:TagResource",
        "pipes:UntagResource",
        "pipes:DeletePipe",
    ),
    "aws:dynamodb/table:Table": (
        "dynamodb:DescribeTable",
        "dynamodb:DescribeContinuousBackups",
        "dynamodb:DescribeTimeToLive",
        "dynamodb:ListTagsOfResource",
        "dynamodb:TagResource",
        "dynamodb:UntagResource",
        "dynamodb:UpdateTable",
        "dynamodb:DeleteTable",
    ),
    # terraform-provider-aws sfn_state_machine: read = DescribeStateMachine + ListTagsForResource; update =
    # UpdateStateMachine (+ tags); delete = DeleteStateMachine, then versions listed until gone.
    "aws:sfn/stateMachine:StateMachine": (
        "states:DescribeStateMachine",
        "states:ListTagsForResource",
        "states:UpdateStateMachine",
        "states:TagResource",
        "states:UntagResource",
        "states:DeleteStateMachine",
        "states:ListStateMachineVersions",
    ),
    "aws:ecr/repository:Repository": (
        "ecr:DescribeRepositories",
        "ecr:ListTagsForResource",
        "ecr:TagResource",
        "ecr:UntagResource",
        "ecr:PutImageTagMutability",
        "ecr:PutImageScanningConfiguration",
        "ecr:DeleteRepository",
    ),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": ("ecr:GetLifecyclePolicy", "ecr:DeleteLifecyclePolicy"),
    "aws:s3/bucket:Bucket": (
        "s3:ListBucket",
        "s3:GetBucketTagging",
        "s3:GetBucketAcl",
        "s3:GetBucketCORS",
        "s3:GetBucketWebsite",
        "s3:GetBucketVersioning",
        "s3:GetAccelerateConfiguration",
        "s3:GetBucketRequestPayment",
        "s3:GetBucketLogging",
        "s3:GetLifecycleConfiguration",
        "s3:GetReplicationConfiguration",
        "s3:GetEncryptionConfiguration",
        "s3:GetBucketObjectLockConfiguration",
        "s3:GetBucketPolicy",
        "s3:DeleteBucket",
    ),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": (
        "s3:GetBucketOwnershipControls",
        *_BUCKET_SETTING_READS,
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
        "s3:GetBucketPublicAccessBlock",
        *_BUCKET_SETTING_READS,
    ),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "s3:GetEncryptionConfiguration",
        *_BUCKET_SETTING_READS,
    ),
    "aws:s3/bucketVersioning:BucketVersioning": ("s3:GetBucketVersioning", *_BUCKET_SETTING_READS),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": (
        "s3:GetLifecycleConfiguration",
        *_BUCKET_SETTING_READS,
    ),
    "aws:s3/bucketPolicy:BucketPolicy": ("s3:GetBucketPolicy", "s3:DeleteBucketPolicy"),
    # HeadObject (read) is authorized as s3:GetObject; PutObject with tags also needs s3:PutObjectTagging.
    "aws:s3/bucketObjectv2:BucketObjectv2": (
        "s3:GetObject",
        "s3:GetObjectTagging",
        "s3:PutObjectTagging",
        "s3:DeleteObject",
    ),
    # CreateQueue with tags also needs sqs:TagQueue.
    "aws:sqs/queue:Queue": (
        "sqs:GetQueueAttributes",
        "sqs:ListQueueTags",
        "sqs:SetQueueAttributes",
        "sqs:TagQueue",
        "sqs:UntagQueue",
        "sqs:DeleteQueue",
    ),
    # The collector image (features.edge) is pushed to the stack's ECR repository by the Docker provider.
    "docker:index/image:Image": (
        "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    ),
}
# Resource types a stack may never declare, and why: the deployer policy would have to grant their
# administration, which no stack's deployer may hold (preflight.deployer_policy refuses the stack).
NOT_THE_STACKS: dict[str, str] = {
    "aws:kms/key:Key": "KMS keys are made by the bootstrap (bootstrap/data_keys.py): creating a tagged key "
                       "needs kms:TagResource on every key of the account, which would let the deployer "
                       "claim any untagged key (docs/security.md); look the key up by its alias instead",
    "aws:kms/alias:Alias": "KMS aliases are made by the bootstrap with their key (bootstrap/data_keys.py)",
}

# What the program's data-source lookups (invokes, every run, preview included) call, by invoke token.
# sts:GetCallerIdentity (aws.get_caller_identity, and the provider itself) needs no permission;
# aws.get_partition calls nothing.
PROGRAM_READS: dict[str, tuple[str, ...]] = {
    "aws:index/getCallerIdentity:getCallerIdentity": (),
    "aws:index/getPartition:getPartition": (),
    "aws:iot/getEndpoint:getEndpoint": ("iot:DescribeEndpoint",),
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": ("ecr:GetAuthorizationToken",),
    # The stack's data key, the bootstrap's, found by its alias: DescribeKey (the provider's only call,
    # terraform-provider-aws kms/key_data_source.go; KMS authorizes it on the key the alias names). The
    # stack's services take the key on the deployer's behalf: Firehose (CUSTOMER_MANAGED_CMK) and DynamoDB
    # call CreateGrant for their grant on it (Firehose API Reference, DeliveryStreamEncryptionConfiguration
    # Input; DynamoDB Developer Guide, "Encryption at rest: How it works").
    "aws:kms/getKey:getKey": ("kms:DescribeKey", "kms:CreateGrant"),
}
