"""Judging a stack before a deploy, without AWS: the program on Pulumi's mock engine, the requests the
AWS provider would send for it, AWS's published rules (service models, authorization reference) and
the deployer's least-privilege policy derived from the plan. Imports `infra`; `infra` never imports it.
"""
