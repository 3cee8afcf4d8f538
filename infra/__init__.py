"""pm500 Pulumi program: AWS IoT registry, data routes, IAM and the edge stack."""
