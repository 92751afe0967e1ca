"""The installed backends, from the entry-point registry (never a list written by hand), for generated tests.

Each registered backend is imported once per process. One whose import fails only because a third-party module
is missing (an optional framework that is not installed, e.g. ``pip install -e '.[mindspore]'`` not run) is
*absent*: its tests are skipped with that reason. Any other failure (a broken plugin, a hook that does not fit
its spec) is kept as the backend's error, and every test of that backend fails with it.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pluggy
import pytest

from harness.backends.hook_checks import scenarios_of
from harness.backends.loading import backend_entry_points, load_backend
from harness.errors import HarnessError

__all__ = ["Backend", "backends_with", "params_where", "params_with", "randomized", "registry"]


@dataclass(frozen=True)
class Backend:
    name: str
    pm: pluggy.PluginManager | None = None
    info: dict[str, Any] | None = None
    absent: str | None = None  # why it is not installed
    error: str | None = None  # why it cannot be loaded

    @property
    def hook(self) -> Any:
        if self.absent:
            pytest.skip(self.absent)
        if self.error:
            pytest.fail(self.error, pytrace=False)
        return self.pm.hook


def _missing_module(ep: Any) -> str | None:
    """The third-party module whose absence stops ``ep`` from importing, if that is all that stops it."""
    own = ep.value.split(":")[0].split(".")[0]
    try:
        ep.load()
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        return exc.name if missing and missing != own else None
    except Exception:  # noqa: BLE001 - any other failure: load_backend reports it in one line
        return None
    return None


@functools.cache
def registry() -> dict[str, Backend]:
    """Every registered backend by name, loaded with :func:`harness.backends.loading.load_backend` (which checks its
    hooks against the specs and its info)."""
    out: dict[str, Backend] = {}
    for name, ep in sorted(backend_entry_points().items()):
        missing = _missing_module(ep)
        if missing:  # a framework the backend needs is not installed
            out[name] = Backend(name, absent=f"backend '{name}' is not installed here: no module '{missing}'")
            continue
        try:
            pm = load_backend(name)
        except HarnessError as exc:
            out[name] = Backend(name, error=str(exc))
            continue
        out[name] = Backend(name, pm=pm, info=pm.hook.harness_backend_info())
    return out


def backends_with(scenario: str) -> list[Backend]:
    """The backends that declare ``scenario``, and those that cannot say (absent or broken: they skip or fail)."""
    return [b for b in registry().values() if b.info is None or scenario in scenarios_of(b.info)]


def params_with(scenario: str) -> list[Any]:
    """:func:`backends_with` as pytest parameters (absent backends marked as skipped)."""
    return params_where(lambda info: scenario in scenarios_of(info))


def params_where(declares: Callable[[dict[str, Any]], bool]) -> list[Any]:
    """The backends whose declaration (``harness_backend_info()``) passes ``declares``, and those that cannot say
    (absent or broken), as pytest parameters: absent backends marked as skipped."""
    return [pytest.param(b.name, marks=pytest.mark.skip(reason=b.absent)) if b.absent else b.name
            for b in registry().values() if b.info is None or declares(b.info)]


def randomized(weights: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """``weights`` with every BatchNorm tensor made non-trivial (gamma != 0, running stats != 0/1),
    so that every block, including a zero-initialised bn3, influences the output."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in weights.items():
        v = np.array(v)
        if k.endswith("num_batches_tracked"):
            out[k] = v
            continue
        is_bn = f"{k.rpartition('.')[0]}.running_mean" in weights
        if is_bn and k.endswith(".weight"):
            v = rng.uniform(0.5, 1.5, v.shape)
        elif (is_bn and k.endswith(".bias")) or k.endswith("running_mean"):
            v = rng.normal(0.0, 0.1, v.shape)
        elif k.endswith("running_var"):
            v = rng.uniform(0.5, 1.5, v.shape)
        out[k] = np.asarray(v, dtype=np.float32)
    return out
