"""Export to ONNX (checked in onnxruntime), TorchScript and torch.export, each
checked against the eager model's outputs on the same batch."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.config import Case
from harness.errors import HarnessError

__all__ = ["FORMATS", "RUNTIMES", "export_model", "inference_session"]

#: Inference runtimes and the export each loads (None: the built model itself, eager).
RUNTIMES = {"eager": None, "torchscript": "torchscript", "pt2": "pt2"}


def _onnx(model: nn.Module, x: torch.Tensor, path: str) -> tuple[str, np.ndarray, str]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise HarnessError("export onnx: onnxruntime is not installed (pip install onnxruntime)") from None
    out = path + ".onnx"
    torch.onnx.export(model, (x,), out, dynamo=False, input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    return out, sess.run(None, {"images": x.cpu().numpy()})[0], f"onnxruntime {ort.__version__}"


def _torchscript(model: nn.Module, x: torch.Tensor, path: str) -> tuple[str, np.ndarray, str]:
    out = path + ".pt"
    torch.jit.save(torch.jit.trace(model, x), out)
    loaded = torch.jit.load(out, map_location=x.device)
    return out, loaded(x).float().cpu().numpy(), f"torch.jit {torch.__version__}"


def _pt2(model: nn.Module, x: torch.Tensor, path: str) -> tuple[str, np.ndarray, str]:
    out = path + ".pt2"
    torch.export.save(torch.export.export(model, (x,)), out)
    loaded = torch.export.load(out).module()
    return out, loaded(x).float().cpu().numpy(), f"torch.export {torch.__version__}"


_EXPORTERS = {"onnx": _onnx, "torchscript": _torchscript, "pt2": _pt2}
#: The formats harness_export writes (declared as ``supports["export"]``).
FORMATS = tuple(_EXPORTERS)


def export_model(case: Case, model: nn.Module, device: torch.device, fmt: str, path: str,
                 batch: int | None = None) -> dict[str, Any]:
    if fmt not in _EXPORTERS:  # the core refuses undeclared formats at load; the hook contract still names them
        raise HarnessError(f"export format '{fmt}' is not supported by the torch backend ({', '.join(FORMATS)})")
    s = case.settings
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(s.seed + 2)
    x = torch.randn(batch or min(s.batch_size, 4), 3, s.image_size, s.image_size, generator=g).to(device)
    try:
        with torch.no_grad():
            reference = model(x).float().cpu().numpy()
            file, got, runtime = _EXPORTERS[fmt](model, x, path)
    finally:
        model.train(was_training)
    diff = float(np.max(np.abs(got - reference)))
    return {"format": fmt, "path": os.path.basename(file), "bytes": os.path.getsize(file),
            "check": {"runtime": runtime, "max_abs_diff": diff, "batch": int(x.shape[0])}}


class TorchSession:
    """A module (eager, TorchScript or torch.export) run under ``torch.inference_mode`` on one device."""

    def __init__(self, fn: Any, device: torch.device, runtime: str, channels_last: bool) -> None:
        self.fn, self.device, self.runtime = fn, device, runtime
        self.format = torch.channels_last if channels_last else torch.contiguous_format

    def inputs(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
        return x.contiguous(memory_format=self.format)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = self.fn(x)
            return out

    def logits(self, out: torch.Tensor) -> np.ndarray:
        return out.float().cpu().numpy()


def inference_session(case: Case, device: torch.device, model: nn.Module | None, runtime: str,
                      path: str | None) -> TorchSession:
    version = f"torch {torch.__version__} on {device}"
    if runtime == "eager":
        assert model is not None, "the eager runtime runs the case's model"
        model.eval()  # stays in inference mode: the case trains no further
        return TorchSession(model, device, f"eager, {version}", case.settings.channels_last)
    if runtime == "torchscript":
        assert path is not None, "the torchscript runtime loads an export"
        fn = torch.jit.load(path, map_location=device).eval()
        return TorchSession(fn, device, f"TorchScript, {version}", case.settings.channels_last)
    if runtime == "pt2":
        assert path is not None, "the pt2 runtime loads an export"
        fn = torch.export.load(path).module().to(device)
        return TorchSession(fn, device, f"torch.export, {version}", case.settings.channels_last)
    raise HarnessError(f"runtime '{runtime}' is not a torch runtime ({', '.join(RUNTIMES)})")
