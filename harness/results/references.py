"""Published numbers of the four seed model cards, as reference records in the result schema.

Every figure of the seeds' performance tables (``shared/seeds/*.md``) is one
record with ``kind: "reference"``: the model, framework and version, device
and device count, batch size and epochs it was measured with, the metric as
published (never converted), and a ``source`` naming the file, the table and
the cell with its original text. Reports put them beside measured cells;
nothing here is ever presented as measured.

``harness references -o FILE`` writes them as JSON Lines; the repository ships
the output as ``results/reference/seeds.jsonl`` (a test keeps it in step).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.results.records import SCHEMA

__all__ = ["Published", "PUBLISHED", "reference_records", "REFERENCE_FILE"]

REFERENCE_FILE = "results/reference/seeds.jsonl"

_TRAIN_BAM = "模型描述 / 训练性能 (training performance)"
_INFER_BAM = "模型描述 / 推理性能 (inference performance)"
_TRAIN_GENET = "性能 / 训练性能 (training performance)"
_EVAL_GENET = "性能 / 评估性能 (evaluation performance)"
_TRAIN_GLUON = "训练结果展示 / 表 2 训练结果展示表 (training results)"
_TRAIN_MG = "模型描述 / 训练性能 (training performance)"
_INFER_MG = "模型描述 / 推理性能 (inference performance)"


@dataclass(frozen=True)
class Published:
    """One published cell: a model on a framework and device count, one or more metrics."""

    model: str
    backend: str  # the framework it ran on, by harness backend name
    framework_version: str
    device: str  # neutral device name
    device_model: str
    devices: int
    scenario: str  # train | eval | inference
    metrics: dict[str, Any]  # flat: top1, top5, ms_per_step, images_per_s, total_time_s, latency_ms, loss
    file: str
    table: str
    cell: str
    text: str
    batch_size: int | None = None
    epochs: float | None = None
    precision: str | None = None
    optimizer: str | None = None
    variant: str = ""
    notes: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


def _h(hours: float = 0, minutes: float = 0, seconds: float = 0) -> float:
    return hours * 3600 + minutes * 60 + seconds


PUBLISHED: tuple[Published, ...] = (
    # --- resnet50_bam.md ------------------------------------------------------------------------------
    Published("resnet50_bam", "mindspore", "1.2.0", "ascend", "Ascend 910", 1, "train",
              {"top1": 77.23, "top5": 93.56, "ms_per_step": 96.0, "total_time_s": _h(45.2)},
              "resnet50_bam.md", _TRAIN_BAM, "分类准确率, 速度, 总时长 / Ascend",
              "单卡：top1:77.23%,top5:93.56%; 单卡：96毫秒/步; 单卡：45.2小时/160轮",
              batch_size=128, epochs=160, optimizer="Momentum"),
    Published("resnet50_bam", "mindspore", "1.2.0", "ascend", "Ascend 910", 8, "train",
              {"top1": 77.35, "top5": 93.56, "ms_per_step": 101.0, "total_time_s": _h(5.7)},
              "resnet50_bam.md", _TRAIN_BAM, "分类准确率, 速度, 总时长 / Ascend",
              "八卡：top1:77.35%,top5:93.56%; 八卡：101毫秒/步; 八卡：5.7小时/160轮",
              batch_size=128, epochs=160, optimizer="Momentum"),
    Published("resnet50_bam", "mindspore", "1.5.0", "gpu", "V100-PCIE", 1, "train",
              {"ms_per_step": 185.0, "total_time_s": _h(81)},
              "resnet50_bam.md", _TRAIN_BAM, "速度, 总时长 / GPU",
              "1p: 185 ms/step; Single card: 81 hours", batch_size=128, epochs=160, optimizer="Momentum"),
    Published("resnet50_bam", "mindspore", "1.5.0", "gpu", "V100-PCIE", 8, "train",
              {"top1": 77.36, "top5": 93.26, "ms_per_step": 228.0, "total_time_s": _h(12.7)},
              "resnet50_bam.md", _TRAIN_BAM, "分类准确率, 速度, 总时长 / GPU",
              "Eight cards: top1: 77.36%, top5: 93.26%; 8P: 228ms/step; Eight cards: 12.7 hours",
              batch_size=128, epochs=160, optimizer="Momentum"),
    Published("resnet50_bam", "mindspore", "1.2.0", "ascend", "Ascend 310", 1, "inference",
              {"top1": 77.23, "top5": 93.54, "latency_ms": 4.8305},
              "resnet50_bam.md", _INFER_BAM, "分类准确率, 速度 / Ascend",
              "top1:77.23%,top5:93.54%; Average time 4.8305 ms of infer_count 50000", batch_size=1),
    Published("resnet50_bam", "mindspore", "1.5.0", "gpu", "V100-PCIE", 1, "inference",
              {"top1": 77.36, "top5": 93.26, "images_per_s": 751.0},
              "resnet50_bam.md", _INFER_BAM, "分类准确率, 速度 / GPU",
              "top1: 77.36%, top5: 93.26% (8 cards); 751 images/second (~1.3 ms/image)"),
    # --- genet_res50.md -------------------------------------------------------------------------------
    *(Published(model, "mindspore", "1.1.1", "ascend", "Ascend 910", 8, "train",
                {"top1": top1, "loss": 1.6, "total_time_s": _h(hours)},
                "genet_res50.md", _TRAIN_GENET, f"准确率, 总时长, 损失 / {title}",
                f"| 准确率 |{shown}|; | 总时长 | {hours}h |; | 损失 | 1.6 |", batch_size=256, epochs=epochs,
                optimizer="Momentum")
      for model, title, top1, shown, hours, epochs in (
          ("genet_res50_theta_minus", "GENet_Res50 θ-version (mlp&extra = False)", 77.8, "77.8%", 8, 220),
          ("genet_res50_theta", "GENet_Res50 θversion (mlp=False & extra=True)", 78.0, "78%", 19, 150),
          ("genet_res50_theta_plus", "GENet_Res50 θ+version (mlp=True & extra=True)", 78.47, "78.47%", 19, 150))),
    *(Published(model, "mindspore", "1.1.1", "ascend", "Ascend 910", 1, "eval", {"top1": top1},
                "genet_res50.md", _EVAL_GENET, "准确率 / GENet", text, batch_size=256)
      for model, top1, text in (
          ("genet_res50_theta_minus", 77.8, "θ-：ACC1[77.8%]"),
          ("genet_res50_theta", 78.0, "θ-：ACC1[78%] (θ's figure, labelled θ- a second time in the card)"),
          ("genet_res50_theta_plus", 78.47, "θ+：ACC1[78.47%]"))),
    # --- gluon_resnet50_v1b.md (Ascend ModelZoo-PyTorch, torch_npu) -----------------------------------
    *(Published("gluon_resnet50_v1b", "torch", version, "ascend", "Ascend 910", devices, "train", metrics,
                "gluon_resnet50_v1b.md", _TRAIN_GLUON, f"row {name}", text, batch_size=256, epochs=90,
                precision="fp16", optimizer="SGD", variant=f"PyTorch {version}",
                notes="AMP O2; the card does not state the batch size: 256 per device is the recipe's")
      for name, version, devices, metrics, text in (
          ("1p-1.5", "1.5", 1, {"images_per_s": 1318.2}, "| 1p-1.5 | - | 1318.2 | 90 | O2 |"),
          ("1p-1.8", "1.8", 1, {"images_per_s": 1626.62}, "| 1p-1.8 | - | 1626.62 | 90 | O2 |"),
          ("8p-1.5", "1.5", 8, {"top1": 77.22, "images_per_s": 9145.32}, "| 8p-1.5 | 77.22 | 9145.32 | 90 | O2 |"),
          ("8p-1.8", "1.8", 8, {"top1": 76.85, "images_per_s": 12204.45},
           "| 8p-1.8 | 76.85 | 12204.45 | 90 | O2 |"))),
    # --- multigrain.md --------------------------------------------------------------------------------
    Published("multigrain_resnet50", "mindspore", "1.5.0", "ascend", "Ascend 910", 8, "train",
              {"ms_per_step": 20.4, "total_time_s": _h(10, 25, 55), "loss": 1.6453942},
              "multigrain.md", _TRAIN_MG, "Speed, 总时间, loss / Ascend 910",
              "20.4毫秒/步（8卡）; 10h25m55s; 1.6453942", batch_size=30, epochs=45, optimizer="THOR",
              settings={"num_classes": 1001}),
    Published("multigrain_resnet50", "mindspore", "1.5.0", "gpu", "Tesla V100 SXM2", 8, "train",
              {"ms_per_step": 76.0, "total_time_s": _h(9, 28, 34), "loss": 1.645802},
              "multigrain.md", _TRAIN_MG, "Speed, 总时间, loss / GPU",
              "76毫秒/步（8卡）; 9h28m34s; 1.645802", batch_size=30, epochs=45, optimizer="THOR",
              settings={"num_classes": 1001}),
    Published("multigrain_resnet50", "mindspore", "1.5.0", "ascend", "Ascend 910", 1, "eval", {"top1": 76.26},
              "multigrain.md", _INFER_MG, "精度 / Ascend 910", "76.26%", batch_size=30,
              settings={"num_classes": 1001}),
    Published("multigrain_resnet50", "mindspore", "1.5.0", "gpu", "GPU", 1, "eval", {"top1": 76.01},
              "multigrain.md", _INFER_MG, "精度 / GPU", "76.01%", batch_size=30, settings={"num_classes": 1001}),
)

_FRAMEWORK = {"mindspore": "MindSpore", "torch": "PyTorch"}


def _metrics(p: Published) -> dict[str, Any]:
    m = p.metrics
    out: dict[str, Any] = {}
    if p.scenario == "train":
        train = {k: v for k, v in (("images_per_s", m.get("images_per_s")), ("total_time_s", m.get("total_time_s")),
                                   ("loss_last", m.get("loss"))) if v is not None}
        if "ms_per_step" in m:
            train["ms_per_step"] = {"mean": m["ms_per_step"]}
        out["train"] = train
    if p.scenario == "inference":
        inf = {}
        if "latency_ms" in m:
            inf["latency_ms"] = {"mean": m["latency_ms"]}
        if "images_per_s" in m:
            inf["images_per_s"] = m["images_per_s"]
        out["inference"] = inf
    acc = {k: m[k] for k in ("top1", "top5") if k in m}
    if acc:
        out["eval"] = acc
    return out


def reference_records() -> list[dict[str, Any]]:
    """Every published figure as a record of the result schema (``kind: "reference"``)."""
    records = []
    for p in PUBLISHED:
        name = f"{p.model}-{p.backend}-{p.device}-{p.devices}p-{p.scenario}" + (f"-{p.variant}" if p.variant else "")
        settings = {"scenario": p.scenario, "devices": p.devices,
                    **({"batch_size": p.batch_size} if p.batch_size else {}),
                    **({"epochs": p.epochs} if p.epochs else {}),
                    **({"precision": p.precision} if p.precision else {}),
                    **({"optimizer": p.optimizer} if p.optimizer else {}), **p.settings}
        records.append({
            "schema": SCHEMA, "kind": "reference", "suite": "published", "run_id": "seeds",
            "case": name.replace(" ", "_"),
            "config": {"model": p.model, "backend": p.backend, "device": p.device, "settings": settings},
            "status": "ok", "reason": None, "metrics": _metrics(p), "samples": {},
            "env": {"framework": _FRAMEWORK[p.backend], "framework_version": p.framework_version,
                    "device_model": p.device_model, "device_count": p.devices},
            "source": {"file": f"shared/seeds/{p.file}", "table": p.table, "cell": p.cell, "text": p.text,
                       **({"notes": p.notes} if p.notes else {})},
        })
    return records
