"""Weight conversion between backends' checkpoint formats.

The source backend reads its checkpoint into neutral NumPy arrays, in its own
process; the target backend, in another, builds the named model, loads the
arrays strictly (a checkpoint of another model or shape is refused, naming
the first mismatching parameter) and writes its own checkpoint. Entries one
framework has no place for (``num_batches_tracked``) are carried through, so
a round trip reproduces the original exactly.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.child import report_errors, run_json
from harness.backends.loading import load_backend
from harness.config import Case, Settings
from harness.errors import HarnessError

__all__ = ["convert", "guess_backend"]

_BY_SUFFIX = {".pt": "torch", ".pth": "torch", ".bin": "torch", ".ckpt": "mindspore"}


def guess_backend(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in _BY_SUFFIX:
        raise HarnessError(f"{path}: cannot tell the framework from '{suffix or 'no suffix'}' "
                           f"(.pt/.pth: torch, .ckpt: mindspore); pass --from/--to")
    return _BY_SUFFIX[suffix]


def convert(src: str, dst: str, *, model: str, src_backend: str | None = None, dst_backend: str | None = None,
            width: float = 1.0, num_classes: int = 1000, image_size: int = 224, timeout: float = 600) -> dict[str, Any]:
    """Convert checkpoint ``src`` (of ``src_backend``) into ``dst`` (of ``dst_backend``) for ``model``."""
    src_backend = src_backend or guess_backend(src)
    dst_backend = dst_backend or guess_backend(dst)
    if not Path(src).is_file():
        raise HarnessError(f"checkpoint '{src}': no such file")
    case = Case(name=f"convert-{model}", model=model, backend=dst_backend, device="cpu",
                settings=Settings(width=width, num_classes=num_classes, image_size=image_size))
    with tempfile.TemporaryDirectory(prefix="harness-convert-") as tmp:
        arrays = str(Path(tmp) / "weights.npz")
        read = run_json("harness.backends.convert", ["read", src_backend, str(Path(src).resolve()), arrays],
                        what=f"convert: reading {src}", cwd=tmp, timeout=timeout)
        wrote = run_json("harness.backends.convert", ["write", json.dumps(case.to_dict()), arrays,
                                             str(Path(dst).resolve())],
                         what=f"convert: writing {dst}", cwd=tmp, timeout=timeout)
    return {"src": src, "dst": dst, "from": src_backend, "to": dst_backend, "model": model,
            "tensors": read["tensors"], "written": wrote["path"]}


def _read(backend: str, src: str, out: str) -> dict[str, Any]:
    weights = load_backend(backend).hook.harness_read_checkpoint(path=src)
    np.savez(out, **weights)
    return {"tensors": len(weights)}


def _write(case_json: str, arrays: str, dst: str) -> dict[str, Any]:
    case = Case.from_dict(json.loads(case_json))
    hook = load_backend(case.backend).hook
    with np.load(arrays) as z:
        weights = dict(z)
    device = hook.harness_setup(case=case)
    model = hook.harness_build_model(case=case, device=device)
    hook.harness_set_weights(case=case, model=model, weights=weights)  # refuses another model or shape
    try:
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        return {"path": hook.harness_write_checkpoint(weights=weights, path=dst)}
    except OSError as exc:
        raise HarnessError(f"{dst}: cannot write: {exc.strerror}") from None


if __name__ == "__main__":
    verb, *rest = sys.argv[1:]
    report_errors(lambda: _read(*rest) if verb == "read" else _write(*rest))
