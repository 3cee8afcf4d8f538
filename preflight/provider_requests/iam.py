"""IAM roles, inline policies, policy attachments and the OIDC provider."""

from __future__ import annotations

from collections.abc import Callable

from preflight.provider_requests.base import ApiRequest, Resolved, compact, label, physical_name, tag_list


def _role(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iam", "CreateRole", compact({
        "RoleName": physical_name(r), "AssumeRolePolicyDocument": r.inputs["assumeRolePolicy"],
        "Description": r.inputs.get("description"), "Path": r.inputs.get("path"),
        "MaxSessionDuration": r.inputs.get("maxSessionDuration"),
        "PermissionsBoundary": r.inputs.get("permissionsBoundary"),
        "Tags": tag_list(r.inputs.get("tags")),
    }), label(r), {"AssumeRolePolicyDocument": "iam-trust"})]


def _role_policy(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iam", "PutRolePolicy", {
        "RoleName": r.inputs["role"], "PolicyName": physical_name(r), "PolicyDocument": r.inputs["policy"],
    }, label(r), {"PolicyDocument": "iam-inline"})]


def _managed_policy(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iam", "CreatePolicy", compact({
        "PolicyName": physical_name(r), "PolicyDocument": r.inputs["policy"],
        "Description": r.inputs.get("description"), "Path": r.inputs.get("path"),
        "Tags": tag_list(r.inputs.get("tags")),
    }), label(r), {"PolicyDocument": "iam-managed"})]


def _oidc_provider(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iam", "CreateOpenIDConnectProvider", compact({
        "Url": r.inputs["url"], "ClientIDList": r.inputs.get("clientIdLists"),
        "ThumbprintList": r.inputs.get("thumbprintLists"), "Tags": tag_list(r.inputs.get("tags")),
    }), label(r))]


def _role_policy_attachment(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iam", "AttachRolePolicy", {"RoleName": r.inputs["role"],
                                                   "PolicyArn": r.inputs["policyArn"]}, label(r))]


MAPPINGS: dict[str, Callable[[Resolved], list[ApiRequest]]] = {
    "aws:iam/role:Role": _role,
    "aws:iam/rolePolicy:RolePolicy": _role_policy,
    "aws:iam/policy:Policy": _managed_policy,
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": _oidc_provider,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": _role_policy_attachment,
}
