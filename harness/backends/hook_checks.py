"""Checks of what a backend's hooks return, so a plugin's mistake is one line naming the hook.

The worker, the probe and ``harness check-backend`` call these on every value the core reads
(everything else a backend returns is opaque to the core). Each raises :class:`HarnessError`
``backend 'NAME': HOOK returned VALUE: WHAT WAS EXPECTED``.
"""
from __future__ import annotations

from typing import Any, TypeGuard

import numpy as np

from harness.config import DEVICES
from harness.errors import HarnessError

__all__ = ["check_info", "check_probe", "check_export", "check_counts", "check_logits", "check_session",
           "DEFAULT_SCENARIOS", "DEFAULT_SUPPORTS", "scenarios_of", "supports_of", "loads_exports_only",
           "export_format_for", "export_formats", "inference_runtime", "model_file_for"]

#: The scenarios of a backend whose info does not name them.
DEFAULT_SCENARIOS = ("train", "eval")

#: What a backend takes when its info's ``supports`` leaves a key out (see ``harness_backend_info``).
DEFAULT_SUPPORTS: dict[str, Any] = {"optimizer": ["sgd"], "precision": ["fp32"], "amp_level": ["auto", "O0"],
                                    "jit_level": ["auto"],
                                    "mode": ["default"], "export": [], "weights": [], "checkpoint": False,
                                    "profile": False, "neutral_weights": True}


def scenarios_of(info: dict[str, Any]) -> list[str]:
    """The scenarios a backend runs."""
    return list(info.get("scenarios") or DEFAULT_SCENARIOS)


def supports_of(info: dict[str, Any]) -> dict[str, Any]:
    """What a backend takes, its own declaration over :data:`DEFAULT_SUPPORTS`."""
    return {**DEFAULT_SUPPORTS, **(info.get("supports") or {})}


def loads_exports_only(info: dict[str, Any]) -> bool:
    """A backend that runs inference on exports another backend makes (it builds no model of its own)."""
    return "inference" in scenarios_of(info) and "export" not in scenarios_of(info)


def export_formats(info: dict[str, Any]) -> list[str]:
    """The formats a backend's ``harness_export`` writes: those of ``supports["export"]``, and those its own inference
    runtimes load when it builds the models it runs (a backend that only loads exports writes none)."""
    formats = list(supports_of(info)["export"])
    if "inference" in scenarios_of(info) and not loads_exports_only(info):
        formats += [f for f in (info.get("runtimes") or {}).values() if f and f not in formats]
    return formats


def inference_runtime(info: dict[str, Any], runtime: str | None) -> str | None:
    """The inference runtime a case uses: ``runtime`` (``settings.runtime``) when set, else the backend's first
    (its ``runtimes`` are in order of preference); None for a backend without runtimes. The one place the default
    is decided: the inference scenario's load-time check and run, and :func:`export_format_for`, all ask here."""
    return runtime or next(iter(info.get("runtimes") or {}), None)


def export_format_for(info: dict[str, Any], runtime: str | None) -> str | None:
    """The export format the inference ``runtime`` (None: the backend's first) loads; None when it runs the built
    model itself."""
    return (info.get("runtimes") or {}).get(inference_runtime(info, runtime) or "")


def _fail(backend: str, hook: str, value: Any, expected: str) -> HarnessError:
    shown = repr(value)
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    return HarnessError(f"backend '{backend}': {hook} returned {shown}: {expected}")


def _is_str_list(v: Any) -> TypeGuard[list[str] | tuple[str, ...]]:
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


def check_info(backend: str, info: Any) -> dict[str, Any]:
    """``harness_backend_info()``: the keys the core reads, with their types."""
    hook = "harness_backend_info()"
    if not isinstance(info, dict):
        raise _fail(backend, hook, info, "expected a dict")
    for key in ("name", "framework", "framework_version", "version"):
        if not isinstance(info.get(key), str):
            raise _fail(backend, hook, info, f"'{key}' must be a string")
    if not _is_str_list(info.get("models")):
        raise _fail(backend, hook, info, "'models' must be a list of model names")
    devices = info.get("devices")
    if not _is_str_list(devices) or not set(devices) <= set(DEVICES):
        raise _fail(backend, hook, info, f"'devices' must be a list drawn from {', '.join(DEVICES)}")
    scenarios = info.get("scenarios", list(DEFAULT_SCENARIOS))
    if not _is_str_list(scenarios) or not scenarios:
        raise _fail(backend, hook, info, "'scenarios' must be a non-empty list of scenario names")
    runtimes = info.get("runtimes", {})
    if not isinstance(runtimes, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str))
                                                 for k, v in runtimes.items()):
        raise _fail(backend, hook, info, "'runtimes' must map runtime names to an export format or null")
    if "inference" in scenarios and not runtimes:
        raise _fail(backend, hook, info, "a backend that runs 'inference' must name its 'runtimes'")
    if not isinstance(info.get("launcher", "single"), str):
        raise _fail(backend, hook, info, "'launcher' must be a launcher's name or absent")
    supports = info.get("supports", {})
    if not isinstance(supports, dict):
        raise _fail(backend, hook, info, "'supports' must be a dict")
    for key, value in supports.items():
        if isinstance(DEFAULT_SUPPORTS.get(key), bool):  # checkpoint, profile, neutral_weights
            if not isinstance(value, bool):
                raise _fail(backend, hook, info, f"'supports.{key}' must be true or false")
        elif not _is_str_list(value):
            raise _fail(backend, hook, info, f"'supports.{key}' must be a list of strings")
    return info


def check_probe(backend: str, device: str, value: Any) -> dict[str, Any]:
    """``harness_probe_device(device)``: available, reason, model, count."""
    hook = f"harness_probe_device(device='{device}')"
    if not isinstance(value, dict) or not isinstance(value.get("available"), bool):
        raise _fail(backend, hook, value, "expected a dict whose 'available' is true or false")
    if not value["available"] and not isinstance(value.get("reason"), str):
        raise _fail(backend, hook, value, "an unavailable device needs a 'reason' string")
    if not isinstance(value.get("count", 0), int):
        raise _fail(backend, hook, value, "'count' must be an integer")
    return value


def check_export(backend: str, fmt: str, value: Any) -> dict[str, Any]:
    """``harness_export(fmt=...)``: format, path (a file name), bytes, check."""
    hook = f"harness_export(fmt='{fmt}')"
    if not isinstance(value, dict) or not isinstance(value.get("path"), str) or not isinstance(value.get("bytes"), int):
        raise _fail(backend, hook, value, "expected a dict with 'format', 'path' (file name) and 'bytes'")
    if not isinstance(value.get("check"), dict):
        raise _fail(backend, hook, value, "'check' must be a dict with 'runtime' and 'max_abs_diff'")
    return value


def check_counts(backend: str, value: Any) -> list[float]:
    """An eval step's output after ``harness_to_host``: ``[top1_correct, top5_correct, count]``."""
    hook = "harness_to_host(eval step output)"
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise _fail(backend, hook, value, "expected [top1_correct, top5_correct, count] as numbers")
    top1, top5, n = value
    if not 0 <= top1 <= top5 <= n:
        raise _fail(backend, hook, value, "expected 0 <= top1_correct <= top5_correct <= count")
    return [float(v) for v in value]


def check_logits(backend: str, hook: str, value: Any, batch: int, classes: int) -> np.ndarray:
    """A float NumPy array ``(batch, classes)`` of finite values."""
    if not isinstance(value, np.ndarray) or value.shape != (batch, classes):
        shape = getattr(value, "shape", None)
        raise _fail(backend, hook, f"{type(value).__name__} of shape {shape}",
                    f"expected a NumPy array of shape ({batch}, {classes})")
    if not np.issubdtype(value.dtype, np.floating):
        raise _fail(backend, hook, f"array of {value.dtype}", "expected floating-point logits")
    return value.astype(np.float32, copy=False)


def check_session(backend: str, runtime: str, value: Any) -> Any:
    """``harness_inference_session``: an object with ``runtime``, ``inputs``, ``run`` and ``logits``."""
    hook = f"harness_inference_session(runtime='{runtime}')"
    missing = [m for m in ("inputs", "run", "logits") if not callable(getattr(value, m, None))]
    if missing or not isinstance(getattr(value, "runtime", None), str):
        what = f"missing {', '.join(missing)}" if missing else "'runtime' must be a string"
        raise _fail(backend, hook, type(value).__name__, f"expected an InferenceSession ({what})")
    return value


def export_stem(fmt: str, batch: int | None) -> str:
    """The file name (without extension) of an export: ``model_<fmt>`` or ``model_<fmt>_b<batch>``."""
    return f"model_{fmt}" if batch is None else f"model_{fmt}_b{batch}"


def batch_template(path: str, batch: int) -> str:
    """An export's path with its batch size replaced by ``{batch}`` (``model_file`` takes such a template)."""
    return path.replace(f"_b{batch}.", "_b{batch}.")


def model_file_for(template: str, batch: int) -> str:
    """The file of ``model_file`` (a path, or a template with ``{batch}``, :func:`batch_template`) for ``batch``
    images: the one substitution of ``{batch}``, used wherever such a file is looked for or loaded."""
    return template.replace("{batch}", str(batch))
