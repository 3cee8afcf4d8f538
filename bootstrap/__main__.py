"""pm500-bootstrap: wires the CI trust (see Pulumi.yaml); everything is in `bootstrap.ci_roles`."""

from __future__ import annotations

import pulumi

from bootstrap.ci_roles import CiRoles, load_settings

roles = CiRoles("ci", load_settings())
pulumi.export("oidcProviderArn", roles.provider_arn)
pulumi.export("previewRoleArn", roles.preview_role_arn)
pulumi.export("deployRoleArn", roles.deploy_role_arn)
