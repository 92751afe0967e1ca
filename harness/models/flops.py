"""Analytic FLOPs per image of every registered variant, and achieved TFLOP/s and MFU from a measured rate.

The count walks the same description the backends build from (:class:`harness.models.specs.ModelSpec`, the torch
builder in ``plugins/torch/models.py`` and the MindSpore one): stem, bottlenecks with their projection
shortcuts, GENet gather-excite in every bottleneck, BAM after the listed stages, the classifier.

Conventions (those of timm's model cards, fvcore and ``torch.utils.flop_counter.FlopCounterMode``):

* **MACs** are the multiply-accumulates of convolutions (grouped and depthwise ones by their real fan-in) and
  dense layers, biases left out. Element-wise work (BatchNorm, activations, pooling, GeM, the attention's
  broadcast products and sums) is not counted: it is a few operations per element against the hundreds of a
  convolution's output element, and it is memory-bound, not what a peak FLOP/s figure measures.
* **FLOPs = 2 x MACs** (a multiply and an add).
* **Training FLOPs per image = 3 x forward**: the backward pass computes the gradients of both the inputs and the
  weights of every layer, each as many MACs as the forward (the MFU convention of PaLM, Chowdhery et al. 2022,
  appendix B). The stem's input gradient is not actually computed (the image needs none), so the real count is
  lower by the stem's forward MACs (about 3% of one forward pass of ResNet-50 at 224 px).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.models.specs import MODELS, ModelSpec, _out, ge_kernel, get_model

__all__ = ["Count", "count_macs", "macs_per_image", "train_flops", "TRAIN_FACTOR", "variants_table"]

#: Training FLOPs per image over forward FLOPs per image (forward + backward for inputs and weights).
TRAIN_FACTOR = 3


@dataclass
class Count:
    """MACs per image by part of the network (``stem``, ``stages``, ``shortcuts``, ``ge``, ``bam``, ``head``);
    ``grouped``: how many of them are in grouped (depthwise) convolutions."""

    parts: dict[str, int]
    grouped: int = 0

    @property
    def macs(self) -> int:
        return sum(self.parts.values())

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def flops_train(self) -> int:
        return TRAIN_FACTOR * self.flops

    def add(self, part: str, macs: int) -> None:
        self.parts[part] = self.parts.get(part, 0) + macs


def _conv(cin: int, cout: int, k: int, out_hw: int, groups: int = 1) -> int:
    """MACs of a k x k convolution with ``out_hw`` x ``out_hw`` outputs."""
    return (cin // groups) * k * k * cout * out_hw * out_hw


def count_macs(spec: ModelSpec) -> Count:
    """Forward MACs per image of ``spec`` at its width, image size and number of classes."""
    c = Count({})
    size = _out(spec.image_size, 7, 2, 3)
    c.add("stem", _conv(3, spec.stem_width, 7, size))
    size = _out(size, 3, 2, 1)  # max-pool
    inplanes = spec.stem_width
    for i, (blocks, planes) in enumerate(zip(spec.layers, spec.widths)):
        out = planes * spec.expansion
        for j in range(blocks):
            stride = 2 if (j == 0 and i > 0) else 1
            after = _out(size, 3, stride, 1)
            c.add("stages", _conv(inplanes, planes, 1, size) + _conv(planes, planes, 3, after)
                  + _conv(planes, out, 1, after))
            if stride != 1 or inplanes != out:
                c.add("shortcuts", _conv(inplanes, out, 1, after))
            if spec.ge in ("theta", "theta-plus"):
                m = after
                if i == 0:  # stage 1 first halves its map with a full 3x3/2 conv
                    m = _out(after, 3, 2, 1)
                    c.add("ge", _conv(out, out, 3, m))
                k = ge_kernel(spec, i + 1)
                if k > m:
                    raise ValueError(f"{spec.name}: GE kernel {k} larger than its {m}x{m} map")
                depthwise = _conv(out, out, k, m - k + 1, groups=out)
                c.add("ge", depthwise)
                c.grouped += depthwise
                if spec.ge == "theta-plus":
                    hidden = max(1, out // spec.reduction)
                    c.add("ge", 2 * _conv(out, hidden, 1, m - k + 1))
            inplanes, size = out, after
        if i + 1 in spec.bam_stages:
            hidden = max(1, out // spec.reduction)
            c.add("bam", 2 * out * hidden)  # channel gate: two dense layers on the pooled vector
            c.add("bam", _conv(out, hidden, 1, size) + 2 * _conv(hidden, hidden, 3, size)
                  + _conv(hidden, 1, 1, size))  # spatial gate (dilated 3x3 convs keep the size)
    c.add("head", inplanes * spec.num_classes)
    return c


def macs_per_image(model: str, *, width: float = 1.0, image_size: int | None = None,
                   num_classes: int | None = None) -> int:
    """Forward MACs per image of a registered variant as a case builds it."""
    return count_macs(get_model(model, width=width, image_size=image_size, num_classes=num_classes)).macs


def _setting(settings: Any, key: str) -> Any:
    """A setting from a case's :class:`harness.config.Settings` or a record's ``config.settings`` dict."""
    return settings.get(key) if isinstance(settings, dict) else getattr(settings, key, None)


def train_flops(model: str, settings: Any, images_per_s: float | None,
                env: dict[str, Any] | None = None, device: str | None = None) -> dict[str, Any]:
    """``metrics.train.flops`` of a training case: analytic MACs and training FLOPs per image, the achieved
    TFLOP/s at ``images_per_s`` (this device's images/s), and MFU against the device's peak for the case's
    precision (:func:`harness.measure.peaks.peak`): None with ``peak_source`` saying why where no peak is known."""
    from harness.measure.peaks import peak

    spec = get_model(model, width=float(_setting(settings, "width") or 1.0),
                     image_size=_setting(settings, "image_size"), num_classes=_setting(settings, "num_classes"))
    n = count_macs(spec)
    achieved = (n.flops_train * images_per_s / 1e12 if isinstance(images_per_s, (int, float))
                and images_per_s == images_per_s and images_per_s > 0 else None)
    tflops, source = peak(device or "", (env or {}).get("device_model"), str(_setting(settings, "precision") or "fp32"),
                          threads=_setting(settings, "threads"))
    return {"macs_per_image": n.macs, "flops_per_image_fwd": n.flops, "flops_per_image_train": n.flops_train,
            "achieved_tflops": achieved, "peak_tflops": tflops, "peak_source": source,
            "mfu": achieved / tflops if achieved is not None and tflops else None,
            "convention": f"MACs of convs and dense layers; FLOPs = 2 x MACs; train = {TRAIN_FACTOR} x forward"}


def variants_table(width: float = 1.0, image_size: int = 224) -> list[dict[str, Any]]:
    """Every registered variant's forward GMACs and training GFLOPs per image (``harness flops``)."""
    rows = []
    for name in MODELS:
        n = count_macs(get_model(name, width=width, image_size=image_size))
        rows.append({"model": name, "GMACs fwd": n.macs / 1e9, "GFLOPs fwd": n.flops / 1e9,
                     "GFLOPs train": n.flops_train / 1e9,
                     **{f"{k} %": 100 * v / n.macs for k, v in n.parts.items() if k in ("ge", "bam")}})
    return rows


def main(args: Any) -> int:
    """``harness flops``: the variants' counts, and the device peak table."""
    import pandas as pd

    from harness.measure.peaks import describe
    from harness.measure.peaks import peak as _peak

    print(f"Per image at width {args.width}, {args.image_size} px (MACs of convs and dense layers; FLOPs = 2 x MACs; "
          f"train = {TRAIN_FACTOR} x forward)\n")
    print(pd.DataFrame(variants_table(args.width, args.image_size)).fillna("").to_markdown(
        index=False, tablefmt="github", floatfmt=".3f"))
    rows = describe()
    print("\nPeak TFLOP/s (dense)\n")
    print(pd.DataFrame([{k: v for k, v in r.items() if k != "source"} for r in rows]).fillna("-").to_markdown(
        index=False, tablefmt="github"))
    value, how = _peak("cpu", None, "fp32")
    print(f"\nThis host's CPU, fp32: {f'{value:.3f} TFLOP/s' if value else 'unknown'} ({how})")
    print("\nSources:\n" + "\n".join(sorted({f"- {r['source']}" for r in rows})))
    return 0
