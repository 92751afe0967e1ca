"""Export to MINDIR (checked by running it as a GraphCell), ONNX (checked in
onnxruntime) and AIR (Ascend only), against the network's own outputs."""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import nn

from harness.config import Case
from harness.dist import place
from harness.errors import HarnessError, Unsupported

from .jit import set_level
from .models import onnx_stem_pool

__all__ = ["FORMATS", "RUNTIMES", "export_model", "inference_session"]

#: The formats :func:`export_model` writes (declared in the backend info's ``supports["export"]``; the core
#: refuses any other before a case runs).
FORMATS = ("mindir", "onnx", "air")
#: Inference runtimes and the export each loads: the network itself (in the case's mode), a MINDIR as a
#: GraphCell, and MindSpore Lite on a MINDIR (the Ascend 310 path).
RUNTIMES = {"graph": None, "mindir": "mindir", "lite": "mindir"}
_LITE_TARGET = {"CPU": "cpu", "GPU": "gpu", "Ascend": "ascend"}


def _mindir(file: str, x: np.ndarray) -> tuple[np.ndarray, str]:
    graph = nn.GraphCell(ms.load(file))
    return graph(ms.Tensor(x)).asnumpy(), f"mindspore GraphCell {ms.__version__}"


def _onnx(file: str, x: np.ndarray) -> tuple[np.ndarray, str]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise HarnessError("export onnx: onnxruntime is not installed (pip install onnxruntime)") from None
    sess = ort.InferenceSession(file, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0], f"onnxruntime {ort.__version__}"


def _export(net: nn.Cell, x: np.ndarray, path: str, fmt: str) -> str:
    """``ms.export`` to ``path.<fmt>``, made writable.

    MindSpore refuses file names outside ``[0-9a-zA-Z@_-.:/\\]`` (a case folder
    may hold '='), so it writes into a fresh temporary folder first; and it
    writes exports read-only (0400).
    """
    with tempfile.TemporaryDirectory(prefix="harness_ms_export_") as tmp:
        ms.export(net, ms.Tensor(x), file_name=os.path.join(tmp, "model"), file_format=fmt.upper())  # static batch
        file = f"{path}.{fmt}"
        shutil.move(os.path.join(tmp, f"model.{fmt}"), file)
    os.chmod(file, 0o644)
    return file


def export_model(case: Case, net: nn.Cell, device: Any, fmt: str, path: str,
                 batch: int | None = None) -> dict[str, Any]:
    if fmt not in FORMATS:  # a suite is refused at load; this is for a direct call (the hook's contract)
        raise HarnessError(f"export format '{fmt}' is not supported by the mindspore backend ({', '.join(FORMATS)})")
    target = ms.get_context("device_target")
    if fmt == "air" and target != "Ascend":
        raise Unsupported(f"{case.device}: AIR export needs an Ascend device (this is {target})")
    s = case.settings
    was_training = net.training
    net.set_train(False)
    try:
        rng = np.random.default_rng(s.seed + 2)
        x = rng.standard_normal((batch or min(s.batch_size, 4), 3, s.image_size, s.image_size), dtype=np.float32)
        reference = net(ms.Tensor(x)).asnumpy()
        pool = getattr(net, "maxpool", None) if fmt == "onnx" else None
        if pool is not None:
            net.maxpool = onnx_stem_pool()  # the exporter cannot convert the padded pool; equal here
        file = _export(net, x, path, fmt)
    finally:
        net.set_train(was_training)
        if pool is not None:
            net.maxpool = pool
    check: dict[str, Any] = {"batch": int(x.shape[0])}
    if fmt == "mindir":
        got, check["runtime"] = _mindir(file, x)
    elif fmt == "onnx":
        got, check["runtime"] = _onnx(file, x)
    else:
        got = None
        check["runtime"] = "none on this host (AIR is compiled to OM by ATC for Ascend 310)"
    if got is not None:
        check["max_abs_diff"] = float(np.max(np.abs(got - reference)))
    return {"format": fmt, "path": os.path.basename(file), "bytes": os.path.getsize(file), "check": check}


class CellSession:
    """A Cell (the network, or a GraphCell loaded from MINDIR) called on MindSpore tensors."""

    def __init__(self, cell: Any, runtime: str) -> None:
        self.cell, self.runtime = cell, runtime

    def inputs(self, images: np.ndarray) -> ms.Tensor:
        return ms.Tensor(np.ascontiguousarray(images, dtype=np.float32))

    def run(self, x: ms.Tensor) -> ms.Tensor:
        return self.cell(x)

    def logits(self, out: ms.Tensor) -> np.ndarray:
        logits: np.ndarray = out.asnumpy().astype(np.float32, copy=False)
        return logits


class LiteSession:
    """MindSpore Lite on a MINDIR: the runtime of the Ascend 310 inference tables (``predict`` is synchronous)."""

    def __init__(self, model: Any, runtime: str) -> None:
        self.model, self.runtime = model, runtime

    def inputs(self, images: np.ndarray) -> Any:
        tensors = self.model.get_inputs()
        tensors[0].set_data_from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        return tensors

    def run(self, tensors: Any) -> Any:
        return self.model.predict(tensors)

    def logits(self, outputs: Any) -> np.ndarray:
        logits: np.ndarray = outputs[0].get_data_to_numpy().astype(np.float32, copy=False)
        return logits


def _lite(case: Case, path: str) -> LiteSession:
    try:
        import mindspore_lite as mslite
    except ImportError:
        raise Unsupported(f"{case.device}: MindSpore Lite is not installed (import mindspore_lite failed); the "
                          "Ascend 310 inference path needs it and CANN") from None
    target = _LITE_TARGET[ms.get_context("device_target")]
    context = mslite.Context()
    context.target = [target]
    if target == "ascend":
        context.ascend.device_id = place().local_device
    model = mslite.Model()
    model.build_from_file(path, mslite.ModelType.MINDIR, context)
    return LiteSession(model, f"MindSpore Lite {getattr(mslite, '__version__', '?')} ({target})")


def inference_session(case: Case, net: nn.Cell | None, device: Any, runtime: str, path: str | None) -> Any:
    mode = "graph" if ms.get_context("mode") == ms.GRAPH_MODE else "pynative"
    if runtime == "graph":
        assert net is not None, "the graph runtime runs the case's model"
        net.set_train(False)  # stays in inference mode: the case trains no further
        level = f", jit_level {device['jit_level']}" if device.get("jit_level") else ""
        return CellSession(set_level(net, device), f"MindSpore {ms.__version__} Cell ({mode} mode{level}, "
                           f"{ms.get_context('device_target')})")
    if runtime == "mindir":
        return CellSession(nn.GraphCell(ms.load(path)),
                           f"MindSpore {ms.__version__} GraphCell from MINDIR ({ms.get_context('device_target')})")
    if runtime == "lite":
        assert path is not None, "the lite runtime loads an export"
        return _lite(case, path)
    raise HarnessError(f"runtime '{runtime}' is not a mindspore runtime ({', '.join(RUNTIMES)})")
