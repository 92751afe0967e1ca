"""harness: compare deep-learning frameworks and hardware on ImageNet models.

The core imports no deep-learning framework. Backends are pluggy plugins
found through the ``harness.backends`` entry-point group; see
:mod:`harness.backends.hookspecs` for the contract.
"""
from __future__ import annotations

__version__ = "0.1.0"

from harness.backends.hookspecs import hookimpl
from harness.config import DEVICES, Case, Settings
from harness.errors import DeviceUnavailable, HarnessError, Unsupported

__all__ = ["__version__", "Case", "Settings", "DEVICES", "HarnessError", "Unsupported", "DeviceUnavailable", "hookimpl"]
