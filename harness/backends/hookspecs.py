"""The backend contract: every hook a backend implements.

A backend is a pluggy plugin (a module or an object with ``@hookimpl``
functions) registered under the entry-point group ``harness.backends``. The
core owns the training/evaluation loops and the clock; backends only build
things and run single steps. Everything a backend returns is opaque to the
core except where a type says otherwise.

Conventions (as in pytest):

* Hooks are called with keyword arguments only. An implementation may accept
  fewer arguments than its spec, never extra ones, so a spec can grow an
  argument without breaking existing backends.
* In a case's process exactly one backend is loaded, so ``firstresult`` hooks
  are answered by that backend. Hooks that collect (``harness_environment``)
  call every plugin loaded, including helper plugins a backend registers.
* A backend implements only what its info calls for (:data:`REQUIRED_HOOKS` says how). The core answers the
  hooks of :data:`DEFAULTED_HOOKS` itself (:mod:`harness.backends.defaults`, registered ``trylast``) when a
  backend leaves them out or returns None; each spec below says what the core's answer is.
* A hook raises :class:`harness.DeviceUnavailable` when the device is absent
  (the case is recorded as *skipped* with the message) and
  :class:`harness.HarnessError` for bad input (the case *fails* with the
  message). Any other exception fails the case with its traceback in the log.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sized
from typing import Any, Protocol

import pluggy

from harness.config import Case

__all__ = ["hookspec", "hookimpl", "PROJECT", "ENTRY_POINT_GROUP", "REQUIRED_HOOKS", "MODEL_HOOKS", "SCENARIO_HOOKS",
           "SUPPORTS_HOOKS", "DEFAULTED_HOOKS", "DataStream", "InferenceSession", "TrainStep"]

PROJECT = "harness"
ENTRY_POINT_GROUP = "harness.backends"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class DataStream(Iterable[Any], Sized, Protocol):
    """What ``harness_data`` returns.

    Iterating yields one epoch of batches, each already on the device and in
    the form the same backend's step functions take. ``len()`` is the number
    of batches in one epoch (synthetic data reports the length it was asked
    for). Iterating again starts a new epoch.
    """


class InferenceSession(Protocol):
    """What ``harness_inference_session`` returns: one model loaded in one runtime, for one batch size.

    The core times ``run`` alone, bracketed by ``harness_synchronize``; ``inputs`` and ``logits`` are
    called outside the timed region.
    """

    #: What ran, with its version and options, e.g. ``"onnxruntime 1.23.2 (CPUExecutionProvider)"``.
    runtime: str

    def inputs(self, images: Any) -> Any:
        """Host float32 NCHW NumPy ``images`` (``batch`` of them) as the runtime's input, on the device."""

    def run(self, inputs: Any) -> Any:
        """One forward pass; may return before the device has finished (the core synchronizes)."""

    def logits(self, outputs: Any) -> Any:
        """``run``'s outputs as a float32 NumPy array ``(batch, classes)`` on the host."""


class TrainStep(Protocol):
    """What ``harness_train_step`` returns: one optimisation step with its own state (optimizer, schedule
    position, loss scale, RNG).

    ``step(batch)`` runs forward, backward and the update and returns the loss *without* reading it to the host.
    ``save(path)`` and ``load(path)`` are optional, and a backend that has them says so with
    ``supports["checkpoint"] = True`` in its info (a case asking for ``checkpoint_every`` is refused at load
    otherwise): ``save`` writes into the existing folder ``path`` what the step needs to go on exactly where it
    stands (the model's parameters and buffers, optimizer state, schedule position, loss-scale state, the
    framework's RNG state) and returns the file names it wrote; ``load`` restores them into a fresh step of the
    same case (before it ran), raising :class:`harness.HarnessError` naming the file when it is missing or of
    another model or shape. A step whose state is NumPy arrays writes them with
    :func:`harness.run.checkpoints.save_arrays` and reads them back, shape-checked, with
    :func:`harness.run.checkpoints.load_arrays`. The core keeps the data position, losses and timings itself
    (:mod:`harness.run.checkpoints`) and makes the checkpoint atomic.
    """

    def __call__(self, batch: Any) -> Any: ...


@hookspec(firstresult=True)
def harness_backend_info() -> dict[str, Any]:
    """Describe the backend without touching any device.

    Returns a dict with keys ``name`` (the entry-point name), ``framework``
    (e.g. ``"PyTorch"``), ``framework_version``, ``version`` (the backend's own),
    ``models`` (list of model names from :mod:`harness.models.specs` it can build),
    ``devices`` (the neutral device names it knows, e.g. ``["cpu", "gpu", "ascend"]``) and
    optionally ``launcher`` (a launcher's name, e.g. ``"torchrun"`` or ``"msrun"``, see
    :mod:`harness.run.launchers`; a backend package may register its own): how a multi-device case of this
    backend is started. Each worker reads its rank, world size and local device with
    :func:`harness.dist.place`; ``harness_setup`` joins the process group and ``harness_build_model`` wraps
    the model for data parallelism.

    ``supports`` says which values of the framework-specific settings this backend takes; every case is
    checked against it when the suite loads (exit 2 with one line, before anything runs):
    ``{"optimizer": ["sgd"], "precision": ["fp32", "bf16", "fp16"], "amp_level": ["auto", "O0", "O1", "O2"],
    "mode": ["default", "eager", "compile"], "export": ["onnx", "torchscript"], "weights": [".pt", ".pth"],
    "checkpoint": True, "profile": True, "neutral_weights": True}`` (``jit_level``: the graph compile levels it
    sets, besides ``auto``, its own default per device; ``export``: the formats ``harness_export``
    writes; ``weights``: the file suffixes ``harness_read_checkpoint`` reads, besides the neutral ``.npz``;
    ``checkpoint``: the train step has ``save``/``load``; ``profile``: it implements ``harness_profile``;
    ``neutral_weights``: ``harness_get_weights``/``harness_set_weights`` hold every tensor of the model contract
    (``harness models MODEL --weights``), so ``harness check-backend``'s golden checks can load the reference's
    weights; false skips them with that reason). A key left out takes the core's defaults
    (:data:`harness.backends.hook_checks.DEFAULT_SUPPORTS`).

    Optional keys: ``scenarios`` (the scenarios it runs, by name (:mod:`harness.run.scenarios`); default
    ``["train", "eval"]``; the hooks each needs are :data:`SCENARIO_HOOKS`) and ``runtimes``
    (inference runtimes, in order of preference, each mapped to the export format it loads, or to
    ``None`` when it runs the built model itself: ``{"eager": None, "torchscript": "torchscript"}``).
    A backend that runs ``inference`` but not ``export`` only loads exports; ``harness run`` has them
    made first by the case's ``export_from`` backend. First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_probe_device(device: str) -> dict[str, Any]:
    """Say whether the neutral ``device`` (``cpu``/``gpu``/``ascend``) is usable here.

    Returns ``{"available": bool, "reason": str | None, "model": str | None,
    "count": int}``: ``reason`` says why not when unavailable (one line, e.g.
    ``"no CUDA device: torch.cuda.is_available() is False"``), ``model`` is the
    actual device model (``"NVIDIA H200"``, ``"Ascend 910B"``, the CPU's name).
    Must not raise for an absent device. Required when ``devices`` names more than ``cpu``; the core's answer
    is the host CPU for ``cpu`` (when declared) and unavailable for any other device. First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_setup(case: Case) -> Any:
    """Prepare the process for ``case`` and return the backend's device handle.

    Selects the device (raising :class:`harness.DeviceUnavailable` when it is
    absent), seeds the framework's RNGs from ``case.settings.seed`` and applies
    process-wide options (threads, execution mode). The returned handle is
    passed back as ``device`` to every later hook. Required with a multi-device ``launcher`` (it joins the
    process group); the core's answer raises :class:`harness.DeviceUnavailable` with ``harness_probe_device``'s
    reason when the device is not available and otherwise returns the neutral device name (``"cpu"``), seeding
    nothing. First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_build_model(case: Case, device: Any) -> Any:
    """Build ``case.model`` (width, image size, class count from settings) on ``device``.

    Returns the backend's model object, initialised from ``case.settings.seed``
    and in training mode. First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_data(case: Case, split: str, device: Any) -> DataStream:
    """Return the ``split`` (``"train"`` or ``"eval"``) stream for ``case.settings.data``.

    ``synthetic``: the core's arrays (:func:`harness.data.synthetic.synthetic_arrays`, drawn
    from the seed, so every framework sees the same bytes), moved to the device once
    and reused (no host work per step). ``folder``/``tiny``: decoded from
    ``case.settings.data_root`` (``train/`` or ``val/``) in parallel workers,
    shuffled and augmented for ``train``, centre-cropped for ``eval``. Batches
    are ``case.settings.batch_size`` images; the train stream drops the last
    partial batch; the eval stream's last batch is padded by the core (see
    ``harness_eval_step``). A backend without a pipeline of its own returns
    :class:`harness.data.host_batches.HostStream` batches moved with ``harness_to_device``
    (:func:`harness.data.host_batches.device_stream`), which is the core's answer when a backend leaves this
    hook out. First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_train_step(case: Case, model: Any, device: Any, total_steps: int, steps_per_epoch: int) -> TrainStep:
    """Return a :class:`TrainStep`: ``step(batch) -> loss`` runs one optimisation step.

    The optimizer, loss (cross-entropy with label smoothing, or the model's own
    loss such as Multigrain's, see :mod:`harness.models.multigrain`), learning-rate schedule
    (:func:`harness.models.schedules.lr_at` over ``total_steps``), mixed precision and
    loss scaling are the backend's and live on the step object (never as attributes
    on a closure). ``loss`` is returned *without* reading it to the host (no
    ``.item()``): the core reads it after the timed region with
    ``harness_to_host``. First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_eval_step(case: Case, model: Any, device: Any) -> Callable[[Any], Any]:
    """Return ``step(batch) -> (top1_correct, top5_correct, count)`` for evaluation.

    Puts ``model`` in inference mode. Every eval batch has exactly ``batch_size`` images, so a static-shape
    graph never recompiles in the timed pass: the core pads the last one (:func:`harness.data.splits.eval_samples`)
    with images whose label is :data:`harness.data.splits.PAD_LABEL` (-1), and the step counts only labels >= 0
    (``count`` is the number of those). The three values may stay on the device;
    the core sums them after the timed region through ``harness_to_host``.
    First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_to_host(value: Any) -> Any:
    """Convert a device value (scalar tensor, or tuple/list of them) to Python floats.

    Called only outside timed regions. Returns a float, or a list of floats for
    a tuple/list. The core's answer converts each value with NumPy (``numpy.asarray``, one element), which
    covers host scalars and any tensor type that NumPy reads; implement it for device tensors NumPy cannot read
    or to read a list in one transfer. First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_synchronize(device: Any) -> bool:
    """Block until all work queued on ``device`` has finished; return True.

    The core calls this at both edges of every timed interval, so it must be
    cheap and do nothing else. A framework that dispatches asynchronously (CUDA
    and Ascend streams, JAX, MindSpore's graph mode on a device) must really wait
    here: ``torch.cuda.synchronize``, ``torch.npu.synchronize``,
    ``mindspore.runtime.synchronize``, or blocking on the last value queued
    (JAX's ``block_until_ready``). A synchronous framework returns at once.
    ``harness check-backend`` checks that it waits for queued work. First
    non-None result wins.
    """


@hookspec(firstresult=True)
def harness_device_memory(device: Any) -> int | None:
    """Peak device memory in bytes allocated by this process, or None when the
    device does not report it (e.g. CPU, where the host peak is measured by the
    core). First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_export(case: Case, model: Any, device: Any, fmt: str, path: str, batch: int | None) -> dict[str, Any]:
    """Export ``model`` as ``fmt`` to ``path`` (without extension) and check it.

    ``batch`` is the batch size of the example input (``None``: a few images); formats with static
    shapes are exported for exactly that batch. Returns ``{"format", "path", "bytes", "check":
    {"runtime", "max_abs_diff"}}``, ``path`` being the file's name beside ``path``: the exported
    file is run in its runtime on one batch and compared with the model's own outputs. Raises
    :class:`harness.HarnessError` naming the supported formats for an unknown ``fmt``. Required when
    ``supports["export"]`` names a format (or an inference runtime of a backend that builds models loads one).
    First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_inference_session(case: Case, device: Any, model: Any, runtime: str, path: str | None,
                              batch: int) -> InferenceSession:
    """Load a model into ``runtime`` (one of ``harness_backend_info()["runtimes"]``) for ``batch`` images.

    ``path`` is the exported file when the runtime loads an export (its format is the one
    ``runtimes`` maps it to), else ``None`` and ``model`` (the built model, weights loaded) runs
    itself; ``model`` is ``None`` in a backend that only loads exports. Returns an
    :class:`InferenceSession`. Raises :class:`harness.Unsupported` when the runtime cannot run on
    this device or host (the case is skipped with the message), :class:`harness.HarnessError` for
    a file it cannot load. First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_to_device(arrays: tuple[Any, ...], device: Any) -> Any:
    """Turn host NumPy arrays (``(images, labels)``: float32 NCHW, int64, optionally
    followed by float32 arrays a step takes, such as Multigrain's ``(B, B)``
    sampling noise) into a batch that this backend's step functions take, on
    ``device``. Used for cross-framework parity checks and tests. First non-None
    result wins.
    """


@hookspec(firstresult=True)
def harness_predict(case: Case, model: Any, device: Any, images: Any) -> Any:
    """Logits of ``model`` in inference mode for ``images`` (a float32 NCHW NumPy
    array), returned as a float32 NumPy array ``(N, classes)``. First non-None
    result wins.
    """


@hookspec(firstresult=True)
def harness_get_weights(case: Case, model: Any) -> dict[str, Any]:
    """The model's parameters and buffers as NumPy arrays under *neutral* names.

    Neutral names are PyTorch's (``layer1.0.bn1.weight``, ``.running_mean``,
    ``.running_var``; see :mod:`harness.models.weights`); a backend whose framework
    names differ maps them. Every name, shape and dtype is the model contract's
    (:func:`harness.models.contract.layout`, ``harness models MODEL --weights``). ``model`` is the object
    ``harness_build_model`` returned, the one the train step updated. Returns a new dict. First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_set_weights(case: Case, model: Any, weights: dict[str, Any]) -> bool:
    """Load neutral-named NumPy ``weights`` into ``model`` strictly; return True.

    Every model tensor must be present with the same shape; names the
    framework has no place for are refused, except
    :data:`harness.models.weights.OPTIONAL_SUFFIXES`. A mismatch raises
    :class:`harness.HarnessError` naming the first mismatching parameter
    (:func:`harness.models.weights.check_weights`). First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_read_checkpoint(path: str) -> dict[str, Any]:
    """Read a checkpoint file of this framework into neutral-named NumPy arrays.

    Raises :class:`harness.HarnessError` naming ``path`` when it is missing or
    not a checkpoint of this framework. Loading must be safe (PyTorch:
    ``weights_only=True``). Optional: the core's answer reads a neutral ``.npz`` (no pickle); the weights are
    shape-checked when ``harness_set_weights`` loads them. First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_write_checkpoint(weights: dict[str, Any], path: str) -> str:
    """Write neutral-named NumPy ``weights`` as this framework's checkpoint at
    ``path``; keep every entry so a round trip through another framework is
    exact. Returns the path written. Optional: the core's answer writes a neutral ``.npz`` (``path`` with
    ``.npz`` added unless it ends so). First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_events(device: Any) -> Any:
    """Device-event timing for a device that runs asynchronously (CUDA, Ascend NPU), or None for host timing.

    Returns an object with ``record()``: an event recorded in the device's queue without blocking the host
    (``torch.cuda.Event(enable_timing=True).record()``, torch_npu's ``torch.npu.Event``, MindSpore's
    ``mindspore.runtime.Event``), and ``elapsed(start, end)``: the seconds the device took between two such events,
    called only after ``harness_synchronize``. With it, the core brackets each timed step by two events and
    synchronises only at the ends of the timed region, so the host keeps queueing while the device works; the
    record says which timing was used (``metrics.timing``). Optional: without it (or on CPU, where it returns
    None) every timed step is bracketed by ``harness_synchronize`` on the host clock. First non-None result wins.
    """


@hookspec(firstresult=True)
def harness_profile(case: Case, device: Any, run_steps: Callable[[], None], folder: str) -> dict[str, Any]:
    """Run a window of training steps under the framework's own profiler and return its op table (``profile: true``).

    Call ``run_steps()`` exactly once, inside the profiler: it is the core's, runs the window's training steps on
    the case's data and times them itself (the device settled at both ends), so starting, stopping and analysing
    the profile are never in the window. Keep the raw trace under ``folder`` (a fresh folder in the case's folder:
    a Chrome trace JSON, the profiler's own output folder). Returns ``{"profiler": "torch.profiler (PyTorch 2.13.0,
    CPU, op self time)", "ops": [{"name": "aten::mkldnn_convolution", "scope": "aten::conv2d", "self_s": 0.21,
    "calls": 265}, ...], "trace": "profile/trace.json"}``: each op's *self* seconds (excluding the ops it called)
    over the whole window, on the device where the framework runs it (an op's kernels' time on a GPU), ``scope``
    (optional) the regions it ran inside (parent ops, ``Optimizer.step#SGD.step``, MindSpore's full scope name),
    which :func:`harness.measure.op_categories.categorise` reads with the name. Declared with
    ``supports["profile"] = True``; raise :class:`harness.Unsupported` where the profiler cannot run here (the
    profile is recorded as skipped with the message, the case stays ok). First non-None result wins.
    """


@hookspec
def harness_environment(case: Case, device: Any) -> dict[str, Any]:
    """Facts about the software and device for the result record.

    Every loaded plugin contributes a dict; the core merges them into ``record["env"]`` beside the host facts
    it gathers itself. The core contributes what it already knows (``framework``, ``framework_version`` and
    ``backend_version`` from ``harness_backend_info``, ``device_model`` and ``device_count`` from
    ``harness_probe_device``); a backend's dict is merged over it and adds what only it knows: versions worth
    recording (CUDA, cuDNN, CANN), thread pools, execution modes.
    """


#: Hooks every backend implements, whatever it declares. Which further hooks a backend must implement follows from
#: its info (:func:`harness.backends.loading.required_hooks`): a scenario's hooks (:data:`SCENARIO_HOOKS`), a
#: ``supports`` key's hook (:data:`SUPPORTS_HOOKS`), ``harness_probe_device`` for a device other than the CPU and
#: ``harness_setup`` for a multi-device ``launcher``. The core answers the hooks of :data:`DEFAULTED_HOOKS` itself
#: when a backend leaves them out (:mod:`harness.backends.defaults`).
REQUIRED_HOOKS = ("harness_backend_info", "harness_synchronize")

#: Hooks that every scenario working on a built model needs.
MODEL_HOOKS = ("harness_build_model", "harness_eval_step", "harness_to_device", "harness_predict",
               "harness_get_weights", "harness_set_weights")

#: The hooks a backend declaring each built-in scenario implements (beyond :data:`REQUIRED_HOOKS`); the scenario
#: classes of :mod:`harness.run.scenarios` name the same tuples. A hook the core defaults is never among them.
SCENARIO_HOOKS: dict[str, tuple[str, ...]] = {
    "train": (*MODEL_HOOKS, "harness_train_step"),
    "eval": MODEL_HOOKS,
    "export": MODEL_HOOKS,
    "inference": ("harness_inference_session",),
    "data": ("harness_to_device",),  # the core's harness_data moves its host batches with it
}

#: The hook a true or non-empty ``supports`` key calls for: ``export`` formats are written by ``harness_export``
#: (so are those an inference runtime of a backend that builds models loads), ``profile`` is ``harness_profile``.
SUPPORTS_HOOKS = {"export": "harness_export", "profile": "harness_profile"}

#: Hooks the core answers when a backend does not (its own answer, when not None, wins).
DEFAULTED_HOOKS = ("harness_probe_device", "harness_setup", "harness_data", "harness_to_host",
                   "harness_environment", "harness_read_checkpoint", "harness_write_checkpoint")
