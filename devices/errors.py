"""The one exception type the CLI turns into a red line and exit code 1."""

from __future__ import annotations


class DeviceError(Exception):
    """A problem the operator can act on, already worded as one line (no traceback needed)."""
