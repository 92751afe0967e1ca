"""Typed case configuration: the settings every backend understands.

A :class:`Case` is what a backend receives: one model on one backend on one
device with fully resolved :class:`Settings`. Settings are validated here, at
load time, so that a misspelled key or a wrong type stops a suite before any
case runs, with a one-line message naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError, near

__all__ = ["Settings", "Case", "SETTING_NAMES", "DEVICES", "VERIFY_LEVELS", "coerce_settings", "check_rules",
           "has_accuracy", "case_slug"]

#: Framework-neutral device names; each backend maps them to its own device.
DEVICES = ("cpu", "gpu", "ascend")
#: How a dataset manifest checks each image, least to most (the ``verify`` setting, ``harness data scan --verify``;
#: what each does: :mod:`harness.data.manifest`). Defined here, the lowest layer that needs them.
VERIFY_LEVELS = ("none", "header", "full")


def _opt(default: Any, help: str, choices: tuple[Any, ...] | None = None, minimum: float | None = None,
         maximum: float | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, "min": minimum, "max": maximum})


@dataclass(frozen=True)
class Settings:
    """Everything a case may set. Defaults suit a quick CPU run."""

    scenario: str = _opt("train", "what the case measures, one of the registered scenarios (harness list): "
                         "train, eval, inference, export, or one a package adds")
    batch_size: int = _opt(32, "images per step per device", minimum=1)
    steps: int | None = _opt(20, "timed training steps after warm-up (ignored when epochs is set)", minimum=1)
    epochs: float | None = _opt(None, "train for this many passes over the data instead of `steps`", minimum=0)
    warmup: int = _opt(5, "untimed warm-up steps before the timed region (the first is the compile step)",
                       minimum=1)
    image_size: int = _opt(224, "square input size in pixels", minimum=16)
    width: float = _opt(1.0, "width multiplier for every layer (1.0 = the published model)", minimum=0.01)
    num_classes: int = _opt(1000, "classifier outputs", minimum=2)
    precision: str = _opt("fp32", "fp32, or autocast in bf16 / fp16 (fp16 uses a loss scale)",
                          ("fp32", "bf16", "fp16"))
    amp_level: str = _opt("auto", "MindSpore AMP level (auto: O0 for fp32, O2 otherwise); torch autocasts "
                          "for O1/O2 and refuses O3", ("auto", "O0", "O1", "O2", "O3"))
    loss_scale: float | str | None = _opt(None, "fp16 loss scale: a number (static) or 'dynamic'")
    channels_last: bool = _opt(False, "NHWC memory format where the backend supports it")
    jit_level: str = _opt("auto", "MindSpore graph compile level: O0 (only the passes correctness needs, kernel by "
                          "kernel) or O1 (adds common passes and automatic operator fusion); auto: the backend's "
                          "documented default for the device", ("auto", "O0", "O1"))
    mode: str = _opt("default", "execution mode, as the backend declares (torch: eager, compile; mindspore: graph, "
                     "pynative)")
    data: str = _opt("synthetic", "synthetic tensors made on the device, an ImageNet-layout folder, "
                     "or the generated tiny dataset", ("synthetic", "folder", "tiny"))
    data_root: str | None = _opt(None, "folder with train/<class>/*.JPEG and val/<class>/*.JPEG")
    threads: int | None = _opt(None, "CPU threads of the framework's intra-op pool (default: its own choice)",
                               minimum=1)
    workers: int = _opt(2, "data-loading worker processes for folder data", minimum=0)
    augment: bool = _opt(True, "train-time augmentation (random-resized-crop, flip, colour jitter)")
    color_jitter: float = _opt(0.4, "brightness, contrast and saturation jitter of the train transform", minimum=0)
    hue_jitter: float = _opt(0.0, "hue jitter of the train transform (fraction of the hue circle)",
                             minimum=0, maximum=0.5)
    lighting: float = _opt(0.0, "AlexNet PCA lighting noise std of the train transform (0: off)", minimum=0)
    eval_resize_ratio: float = _opt(0.875, "eval: resize the short side to image_size / ratio, then centre-crop",
                                    minimum=0.01, maximum=1.0)
    recipe: str | None = _opt(None, "a published training recipe by name (harness list --recipes) or 'published' "
                              "for the model's own; settings given in the suite override its values")
    devices: int = _opt(1, "data-parallel devices; a recipe picks its per-device batch and learning rate for this "
                        "count", minimum=1)
    nodes: int = _opt(1, "machines taking part; each runs `harness run` with its own node_rank", minimum=1)
    node_rank: int = _opt(0, "this machine's index among the nodes", minimum=0)
    master_addr: str = _opt("127.0.0.1", "address of node 0, where the launcher's rendezvous runs")
    master_port: int | None = _opt(None, "rendezvous port (default: a free port on a single node, 29500 across "
                                   "nodes)", minimum=1)
    rank_table_file: str | None = _opt(None, "Ascend HCCL rank table (RANK_TABLE_FILE) for MindSpore on Ascend")
    optimizer: str = _opt("sgd", "sgd (momentum, optionally nesterov), or one the backend declares (mindspore: "
                          "thor, its second-order optimizer, Ascend and GPU only)")
    lr: float = _opt(0.1, "peak learning rate", minimum=0)
    momentum: float = _opt(0.9, "SGD momentum", minimum=0)
    nesterov: bool = _opt(False, "Nesterov momentum")
    weight_decay: float = _opt(1e-4, "L2 weight decay", minimum=0)
    weight_decay_on: str = _opt("weights", "weights: conv/dense weights only (never biases or BN); all: every "
                                "network parameter", ("weights", "all"))
    label_smoothing: float = _opt(0.0, "label smoothing epsilon", minimum=0, maximum=0.999)
    label_smoothing_off: str = _opt("torch", "smoothed target: torch: 1-eps+eps/K and eps/K (PyTorch); k-1: 1-eps and "
                                    "eps/(K-1); k: 1-eps and eps/K (MindSpore ModelZoo variants)",
                                    ("torch", "k-1", "k"))
    schedule: str = _opt("constant", "learning-rate schedule (see harness.models.schedules)",
                         ("constant", "cosine", "step", "linear", "linear_cosine", "poly"))
    schedule_per_epoch: bool = _opt(False, "hold the learning rate constant within an epoch (epoch-wise schedules)")
    schedule_period_epochs: float | None = _opt(None, "cosine: half-period T_max in epochs; poly: the epoch where the "
                                                "rate reaches 0 (default: the run's length)", minimum=0)
    schedule_cycles: float = _opt(0.47, "linear_cosine: cosine cycles over the run", minimum=0)
    lr_power: float = _opt(1.0, "poly: exponent of (1 - epoch / period)", minimum=0)
    lr_warmup_epochs: float = _opt(0.0, "linear learning-rate warm-up length in epochs", minimum=0)
    lr_warmup_init: float = _opt(0.0, "learning rate at the start of the warm-up", minimum=0)
    min_lr: float = _opt(0.0, "floor of the cosine, linear and linear_cosine schedules", minimum=0)
    milestones: tuple[float, ...] = _opt((), "epochs at which the step schedule multiplies lr by gamma")
    gamma: float = _opt(0.1, "step schedule factor", minimum=0)
    damping_init: float = _opt(0.03, "thor: initial damping", minimum=0)
    damping_decay: float = _opt(0.87, "thor: damping = damping_init * damping_decay ** (epoch / 10)", minimum=0)
    thor_frequency: int = _opt(100, "thor: steps between updates of the second-order matrices", minimum=2)
    seed: int = _opt(0, "seed for weights, data order and synthetic data", minimum=0, maximum=2**32 - 1)
    eval: bool = _opt(True, "evaluate after training (top-1/top-5 on the eval split)")
    target_top1: float | None = _opt(None, "time to accuracy: evaluate every eval_every_epochs and stop when top-1 "
                                     "(%) reaches this; the clock starts before data is touched and includes "
                                     "evaluation (MLPerf style)", minimum=0, maximum=100)
    eval_every_epochs: float = _opt(1.0, "time to accuracy: epochs between evaluations", minimum=0.001)
    eval_batches: int | None = _opt(None, "limit evaluation to this many batches", minimum=1)
    export: tuple[str, ...] = _opt((), "formats to export after training or evaluation (those the backend declares), "
                                       "checked against the model's outputs")
    weights: str | None = _opt(None, "a checkpoint (this backend's format, or harness's neutral .npz) loaded into the "
                               "model before training, evaluation or inference")
    runtime: str | None = _opt(None, "inference: the runtime the model runs in, one of the backend's (harness plugins; "
                               "e.g. torch: eager, torchscript; mindspore: graph, mindir, lite; onnxruntime: "
                               "onnxruntime); default: the backend's first")
    inference_batch_sizes: tuple[int, ...] = _opt((1,), "inference: batch sizes whose throughput is measured (batch 1 "
                                                  "also gives the latency percentiles)", minimum=1)
    data_workers: tuple[int, ...] = _opt((), "scenario data: worker counts to time the input pipeline at (default: "
                                         "workers)", minimum=0)
    latency_min_runs: int = _opt(100, "inference: timed runs per batch size, at least", minimum=1)
    latency_min_s: float = _opt(2.0, "inference: seconds of timed runs per batch size, at least", minimum=0)
    latency_warmup_s: float = _opt(0.5, "inference: seconds of untimed warm-up runs per batch size, at least (after "
                                   "the warmup count); a few runs of milliseconds leave caches and clocks cold",
                                   minimum=0)
    model_file: str | None = _opt(None, "inference: an exported model to load instead of exporting one; '{batch}' in "
                                  "the path is replaced by the batch size for static-shape exports")
    export_from: str = _opt("torch", "inference in a backend that only loads exports (onnxruntime): the backend that "
                            "builds the model and exports it first, in its own process")
    checkpoint_every: int | None = _opt(None, "training: save the training state (model, optimizer, schedule, loss "
                                        "scale, data position, RNG) every this many steps, and at the end; a case "
                                        "run again in the same folder (harness run --resume) continues from the "
                                        "latest one", minimum=1)
    checkpoint_every_epochs: float | None = _opt(None, "training: as checkpoint_every, in epochs", minimum=0.001)
    checkpoint_keep: int = _opt(2, "training: checkpoints kept (the oldest are deleted)", minimum=1)
    verify: str = _opt("header", "folder data: how the dataset's manifest checks each image when a class folder is "
                       "first scanned (or changed): none (list files only), header (read each header and the end "
                       "of each JPEG/PNG), full (decode each image once)", choices=VERIFY_LEVELS)
    max_bad_images: float = _opt(0.01, "folder data: files that are not readable images are skipped with a warning "
                                 "and counted; past this fraction of a split (or this count, when >= 1) the case "
                                 "fails", minimum=0)
    profile: bool = _opt(False, "training: after everything the case measures, run one window of a few more training "
                         "steps under the framework's own profiler (torch.profiler, torch_npu.profiler, "
                         "mindspore.profiler), keep its trace in the case folder and record where the step time goes "
                         "by op category (metrics.train.profile; harness.measure.profiles)")
    repeats: int = _opt(1, "runs of the case, each in a fresh process, interleaved with the suite's other cases; "
                        "its figures are the median of the runs with a 95% confidence interval from them",
                        minimum=1, maximum=100)
    timeout: float = _opt(900.0, "seconds before the case is stopped and recorded as failed", minimum=1)

    def __post_init__(self) -> None:
        """Settings cannot exist unvalidated: every value's type and range, then the rules between them."""
        values = {f: getattr(self, f) for f in _FIELD_NAMES}
        typed = coerce_settings(values, "settings")
        for key, value in typed.items():
            if value != values[key] or type(value) is not type(values[key]):
                object.__setattr__(self, key, value)
        check_rules(self)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_FIELD_NAMES = tuple(_FIELDS)
_HINTS = typing.get_type_hints(Settings)
SETTING_NAMES = tuple(_FIELDS)


def _type_name(hint: Any) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if typing.get_origin(hint) is tuple:  # tuple[X, ...]: a list in a suite
        return f"list of {_type_name(args[0])}"
    return {type(None): "null", int: "integer", float: "number", str: "string", bool: "true/false"}.get(
        hint, str(hint))


def _coerce(value: Any, hint: Any) -> Any:
    """Return ``value`` converted to ``hint`` or raise ``TypeError``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _coerce(value, arg)
            except TypeError:
                continue
        raise TypeError
    if origin is tuple:  # tuple[X, ...]: one value or a list of them
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise TypeError
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item) for v in value)
    if hint is type(None):
        if value is None:
            return None
        raise TypeError
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise TypeError
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError
    raise TypeError


def coerce_settings(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate a mapping of settings, returning typed values.

    ``where`` prefixes every message, e.g. ``"suites/smoke.yaml: settings"``.
    Raises :class:`HarnessError` on an unknown key, a wrong type or a value
    out of range.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _FIELDS:
            raise HarnessError(f"{where}.{key}: unknown setting{near(key, SETTING_NAMES)}")
        hint = _HINTS[key]
        try:
            typed = _coerce(value, hint)
        except TypeError:
            raise HarnessError(
                f"{where}.{key}: expected {_type_name(hint)}, got {type(value).__name__} {value!r}") from None
        meta = _FIELDS[key].metadata
        if meta["choices"] and typed not in meta["choices"]:
            raise HarnessError(f"{where}.{key}: {typed!r} is not one of {', '.join(meta['choices'])}"
                               f"{near(typed, meta['choices'])}")
        for item in typed if isinstance(typed, tuple) else (typed,):
            if meta["min"] is not None and isinstance(item, (int, float)) and item < meta["min"]:
                raise HarnessError(f"{where}.{key}: {item!r} is below the minimum {meta['min']}")
            if meta["max"] is not None and isinstance(item, (int, float)) and item > meta["max"]:
                raise HarnessError(f"{where}.{key}: {item!r} is above the maximum {meta['max']}")
        if key == "loss_scale" and isinstance(typed, str) and typed != "dynamic":
            raise HarnessError(f"{where}.{key}: expected a number or 'dynamic', got {typed!r}")
        out[key] = typed
    return out


def check_rules(s: Settings) -> None:
    """Rules between the core's settings. A scenario's own rules are checked with the case's backend, at load
    (:func:`harness.run.scenarios.check_settings`): the scenario is a role the core below ``harness.run`` does not
    know."""
    if s.amp_level == "O0" and s.precision != "fp32":
        raise HarnessError(f"amp_level O0 means fp32, but precision is {s.precision}")
    if s.amp_level in ("O1", "O2", "O3") and s.precision == "fp32":
        raise HarnessError(f"amp_level {s.amp_level} needs precision fp16 or bf16")
    if s.jit_level != "auto" and s.mode in ("pynative", "eager"):
        raise HarnessError(f"jit_level {s.jit_level} sets how a graph compiles, but mode {s.mode} runs op by op")
    if s.target_top1 is not None and not has_accuracy(s):
        raise HarnessError(f"target_top1: data {s.data} has random labels, so no top-1 is ever reached; use data: tiny "
                           "or folder")
    if s.node_rank >= s.nodes:
        raise HarnessError(f"node_rank {s.node_rank} is not below nodes {s.nodes}")
    if s.profile and s.scenario != "train":
        raise HarnessError(f"profile: true profiles training steps; scenario {s.scenario} does not train")


def has_accuracy(settings: Settings | dict[str, Any]) -> bool:
    """Whether a case's data carry labels worth scoring (synthetic data do not)."""
    data = settings.get("data") if isinstance(settings, dict) else settings.data
    return data not in (None, "synthetic")


@dataclass(frozen=True)
class Case:
    """One unit of work: a model on a backend on a device, with resolved settings."""

    name: str
    model: str
    backend: str
    device: str
    settings: Settings = field(default_factory=Settings)
    #: The suite's matrix values that made this case (``{"data": "tiny"}``): reports group by them.
    variant: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["settings"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["settings"].items()}
        d["variant"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.variant.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Case:
        settings = Settings(**coerce_settings(d.get("settings", {}), "case.settings"))
        return cls(name=d["name"], model=d["model"], backend=d["backend"], device=d["device"], settings=settings,
                   variant=dict(d.get("variant") or {}))


_SLUG = re.compile(r"[^A-Za-z0-9._=-]+")


def case_slug(name: str) -> str:
    """A case name made safe as one path component (never '..', never a separator)."""
    slug = _SLUG.sub("_", name).strip("._") or "case"
    return slug[:120]
