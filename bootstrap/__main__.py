"""pm500-bootstrap: wires the CI trust (`bootstrap.ci_roles`) and each stack's data key
(`bootstrap.data_keys`); see Pulumi.yaml."""

from __future__ import annotations

import pulumi

from bootstrap.ci_roles import NAMESPACE, CiRoles, load_settings
from bootstrap.data_keys import DataKey, adopted_keys

settings = load_settings()
adopted = adopted_keys(pulumi.Config(NAMESPACE), settings.stacks)
roles = CiRoles("ci", settings)
keys = {stack: DataKey(stack, adopted.get(stack)) for stack in settings.stacks}
pulumi.export("oidcProviderArn", roles.provider_arn)
# GitHub environment -> the role ARN to set as that environment's variable AWS_ROLE_ARN
pulumi.export("roleArns", roles.role_arns)
# stack -> its permissions boundary (every role the stack creates carries it)
pulumi.export("boundaryArns", roles.boundary_arns)
# stack -> its data key (the stack finds it by its alias, alias/pm500-<stack>-data)
pulumi.export("dataKeyArns", {stack: key.key_arn for stack, key in keys.items()})
