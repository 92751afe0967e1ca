"""The hooks of the ``onnxruntime`` backend.

It runs one scenario, ``inference``, on ONNX files (``settings.model_file``, or the exports ``harness run``
has the case's ``export_from`` backend make first). Devices map to ONNX Runtime execution providers:
cpu -> CPUExecutionProvider, gpu -> CUDAExecutionProvider, ascend -> CANNExecutionProvider. A device whose
provider is not in this build of onnxruntime is reported unavailable with the providers it has.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from harness import DeviceUnavailable, HarnessError, hookimpl
from harness.config import Case
from harness.dist import place
from harness.errors import one_line
from harness.models.specs import MODELS

from . import __version__

PROVIDERS = {"cpu": "CPUExecutionProvider", "gpu": "CUDAExecutionProvider", "ascend": "CANNExecutionProvider"}


def _status(device: str) -> dict[str, Any]:
    if device not in PROVIDERS:
        return {"available": False, "reason": f"unknown device '{device}'", "model": None, "count": 0}
    have = ort.get_available_providers()
    if PROVIDERS[device] not in have:
        return {"available": False, "reason": f"no {device}: onnxruntime {ort.__version__} has no "
                f"{PROVIDERS[device]} (it has {', '.join(have)})", "model": None, "count": 0}
    return {"available": True, "reason": None, "model": f"{PROVIDERS[device]} ({ort.get_device()})", "count": 1}


@hookimpl
def harness_backend_info() -> dict[str, Any]:
    return {"name": "onnxruntime", "framework": "ONNX Runtime", "framework_version": ort.__version__,
            "version": __version__, "devices": list(PROVIDERS), "scenarios": ["inference"],
            "runtimes": {"onnxruntime": "onnx"}, "models": list(MODELS)}


@hookimpl
def harness_probe_device(device: str) -> dict[str, Any]:
    return _status(device)


@hookimpl
def harness_setup(case: Case) -> dict[str, Any]:
    status = _status(case.device)
    if not status["available"]:
        raise DeviceUnavailable(status["reason"])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if case.settings.threads:
        options.intra_op_num_threads = case.settings.threads
        options.inter_op_num_threads = 1
    provider = PROVIDERS[case.device]
    device_id = place().local_device
    provider_options = {} if case.device == "cpu" else {"device_id": device_id}
    return {"device": case.device, "provider": provider, "provider_options": provider_options,
            "device_id": device_id, "options": options, "status": status}


class OrtSession:
    """One ONNX model in one InferenceSession. On the CPU, inputs are host arrays; on an accelerator they are
    copied to device memory beforehand and outputs bound there (I/O binding), so ``run`` holds the model alone."""

    def __init__(self, path: str, device: dict[str, Any]) -> None:
        try:
            self.session = ort.InferenceSession(path, sess_options=device["options"],
                                                providers=[(device["provider"], device["provider_options"])])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise HarnessError(f"model_file '{path}': onnxruntime cannot load it: {one_line(exc)}"
                               ) from None
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name
        self.on_host = device["device"] == "cpu"
        self.ort_device = {"gpu": "cuda", "ascend": "cann"}.get(device["device"], "cpu")
        self.device_id = device["device_id"]
        self.runtime = (f"onnxruntime {ort.__version__} ({device['provider']}, "
                        f"{device['options'].intra_op_num_threads or 'default'} threads)")

    def inputs(self, images: np.ndarray) -> Any:
        x = np.ascontiguousarray(images, dtype=np.float32)
        if self.on_host:
            return {self.input: x}
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input, ort.OrtValue.ortvalue_from_numpy(x, self.ort_device, self.device_id))
        binding.bind_output(self.output, self.ort_device, self.device_id)
        return binding

    def run(self, feed: Any) -> Any:
        if self.on_host:
            return self.session.run([self.output], feed)[0]
        self.session.run_with_iobinding(feed)
        return feed

    def logits(self, out: Any) -> np.ndarray:
        if self.on_host:
            return np.asarray(out, dtype=np.float32)
        logits: np.ndarray = out.copy_outputs_to_cpu()[0].astype(np.float32, copy=False)
        return logits


@hookimpl
def harness_inference_session(case: Case, device: dict[str, Any], model: Any, runtime: str, path: str | None,
                              batch: int) -> OrtSession:
    if runtime != "onnxruntime":
        raise HarnessError(f"runtime '{runtime}' is not an onnxruntime runtime (onnxruntime)")
    if not path:
        raise HarnessError("the onnxruntime backend loads ONNX files: set model_file or export_from")
    return OrtSession(path, device)


@hookimpl
def harness_synchronize(device: dict[str, Any]) -> bool:
    return True  # InferenceSession.run returns when its outputs are ready, on every provider


@hookimpl
def harness_environment(case: Case, device: dict[str, Any]) -> dict[str, Any]:
    # framework, versions and the device's model and count are the core's (from the info and the probe)
    return {"onnxruntime_providers": ort.get_available_providers()}
