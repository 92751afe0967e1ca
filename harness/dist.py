"""Where this process stands in a multi-device case: the one place rank, world size and local device id are read.

Launchers start one process per device and tell each its place through the environment, each launcher with its
own names: torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; msrun sets ``RANK_ID``, ``RANK_SIZE`` and
``DEVICE_ID`` (``DEVICE_ID`` is also how a single Ascend process is pointed at one NPU). The core and every
backend read them here, with this precedence, never from ``os.environ`` themselves.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Place", "place"]


@dataclass(frozen=True)
class Place:
    rank: int = 0
    world: int = 1
    local_device: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _int(env: Mapping[str, str], *names: str, default: int) -> int:
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                from harness.errors import HarnessError
                raise HarnessError(f"environment variable {name}={value!r}: expected an integer") from None
    return default


def place(env: Mapping[str, str] | None = None) -> Place:
    """This process's rank, world size and local device index."""
    env = os.environ if env is None else env
    return Place(rank=_int(env, "RANK", "RANK_ID", default=0), world=_int(env, "WORLD_SIZE", "RANK_SIZE", default=1),
                 local_device=_int(env, "LOCAL_RANK", "DEVICE_ID", default=0))
