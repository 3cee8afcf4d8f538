"""The typer commands of `cli.py`, one module per thing the operator works on (devices, sites, meters,
stacks). Each command parses its options and calls plain functions (`devices/`, `preflight/`); what
the operator reads (consoles, the one-line errors) is in `commands.console`.
"""
