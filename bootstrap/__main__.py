"""pm500-bootstrap: wires the CI trust (see Pulumi.yaml); everything is in `bootstrap.ci_roles`."""

from __future__ import annotations

import pulumi

from bootstrap.ci_roles import CiRoles, load_settings

roles = CiRoles("ci", load_settings())
pulumi.export("oidcProviderArn", roles.provider_arn)
# GitHub environment -> the role ARN to set as that environment's variable AWS_ROLE_ARN
pulumi.export("roleArns", roles.role_arns)
# stack -> its permissions boundary (every role the stack creates carries it)
pulumi.export("boundaryArns", roles.boundary_arns)
