"""Analytic FLOPs (harness.models.flops) against published counts and torch's FLOP counter, the device peak table
(harness.measure.peaks), MFU in the record and the report."""
from __future__ import annotations

import pytest

from harness.measure.peaks import PEAKS, cpu_peak, find, peak
from harness.models.flops import (
    TRAIN_FACTOR,
    count_macs,
    macs_per_image,
    train_flops,
    variants_table,
)
from harness.models.specs import MODELS, get_model
from harness.results.frame import records_frame
from harness.results.records import SCHEMA, _misshapen
from harness.results.report import render_markdown
from harness.results.tables import comparison_matrix


def test_gluon_resnet50_v1b_at_224_is_the_published_4_11_gmacs():
    # timm resnet50.gluon_in1k model card and shared/reference/models.md: 4.11 GMACs at 224 px
    macs = macs_per_image("gluon_resnet50_v1b")
    assert macs == pytest.approx(4.11e9, rel=0.02)
    # ResNet-50 BAM: ~4.17 GMACs (models.md)
    assert macs_per_image("resnet50_bam") == pytest.approx(4.17e9, rel=0.02)


def test_flops_conventions_and_what_each_variant_adds():
    n = count_macs(get_model("gluon_resnet50_v1b"))
    assert n.flops == 2 * n.macs and n.flops_train == TRAIN_FACTOR * 2 * n.macs
    assert n.parts["head"] == 2048 * 1000 and n.parts["stem"] == 3 * 49 * 64 * 112 * 112
    base = n.macs
    assert macs_per_image("genet_res50_theta_minus") == base  # a global mean: no MACs
    assert macs_per_image("multigrain_resnet50") == base  # GeM instead of the average pool
    assert macs_per_image("genet_res50_theta") > macs_per_image("resnet50_bam") > base
    assert macs_per_image("genet_res50_theta_plus") > macs_per_image("genet_res50_theta")
    # width and size scale as a conv net does: width^2 roughly (rounded channels, the 3-channel stem apart), pixels
    assert macs_per_image("gluon_resnet50_v1b", image_size=112) < base / 3.5
    assert macs_per_image("gluon_resnet50_v1b", width=0.5) == pytest.approx(base / 4, rel=0.05)
    rows = variants_table()
    assert [r["model"] for r in rows] == list(MODELS)


def _torch_builds():
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from harness_torch.models import build_model

    for model in MODELS:
        spec = get_model(model, width=0.125, image_size=32, num_classes=10)
        yield torch, FlopCounterMode, model, spec, build_model(spec).train()


def test_analytic_forward_count_equals_torch_flop_counter():
    """Every variant, built by the torch backend at reduced width and size: the forward count is exact."""
    for torch, FlopCounterMode, model, spec, net in _torch_builds():
        with FlopCounterMode(display=False) as fwd, torch.no_grad():
            net.eval()(torch.randn(2, 3, 32, 32))
        assert fwd.get_total_flops() == 2 * 2 * count_macs(spec).macs, model  # batch 2, FLOPs = 2 x MACs


@pytest.mark.slow
def test_analytic_training_count_equals_torch_flop_counter():
    """fwd + bwd is 3 x forward less the stem's input gradient (never computed). torch 2.13's counter multiplies a
    grouped convolution's weight-gradient FLOPs by its groups (fixed upstream in pytorch/pytorch#183405), so the
    backward of the GENet depthwise convs is taken from the analytic count: 2 x their forward."""
    batch = 2
    for torch, FlopCounterMode, model, spec, net in _torch_builds():
        x = torch.randn(batch, 3, 32, 32)
        n = count_macs(spec)
        with FlopCounterMode(display=False) as both:
            net(x).sum().backward()
        grouped = [f"ResNet.{name}" for name, m in net.named_modules()
                   if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
        assert bool(grouped) == bool(n.grouped), model
        counts = both.get_flop_counts()
        their_grouped_bwd = sum(counts[name][torch.ops.aten.convolution_backward] for name in grouped)
        total = both.get_total_flops() - their_grouped_bwd + batch * 2 * 2 * n.grouped
        assert total == batch * 2 * (TRAIN_FACTOR * n.macs - n.parts["stem"]), model


def test_device_table_matches_device_names_and_cites_sources():
    assert find("NVIDIA H200").name == "H200 SXM" and find("NVIDIA H200 NVL").name == "H200 NVL"
    assert find("NVIDIA H100 80GB HBM3").name == "H100 SXM" and find("NVIDIA H100 PCIe").name == "H100 PCIe"
    assert find("NVIDIA A100-SXM4-80GB").name == "A100" and find("Tesla V100-SXM2-16GB").name == "V100 SXM2"
    assert find("Tesla V100-PCIE-32GB").name == "V100 PCIe"
    assert find("Ascend910B3").name == "Ascend 910B" and find("Ascend910A").name == "Ascend 910"
    assert find("fake-cpu") is None
    assert all(p.source for p in PEAKS)
    assert peak("gpu", "NVIDIA H200", "bf16")[0] == 989.5
    value, source = peak("gpu", "NVIDIA A100-SXM4-40GB", "fp32")  # fp32 convolutions run as TF32
    assert value == 156.0 and "tf32" in source
    assert peak("gpu", "Tesla V100-SXM2-16GB", "fp32")[0] == 15.7
    assert peak("gpu", "Tesla V100-SXM2-16GB", "bf16") == (None, pytest.approx(peak("gpu", "V100", "bf16")[1]))
    assert peak("ascend", "Ascend910A", "fp16")[0] == 256.0
    value, why = peak("gpu", "Some Future GPU", "fp32")
    assert value is None and "not in the peak table" in why


def cpuinfo(vendor: str, flags: str, mhz: float, cores: int, threads_per_core: int = 2) -> str:
    blocks = []
    for n in range(cores * threads_per_core):
        blocks.append(f"processor\t: {n}\nvendor_id\t: {vendor}\nmodel name\t: Test CPU\ncpu MHz\t\t: {mhz}\n"
                      f"physical id\t: 0\ncore id\t\t: {n % cores}\nflags\t\t: {flags}\n")
    return "\n".join(blocks) + "\n"


def test_cpu_peak_is_cores_times_flops_per_cycle_times_clock():
    intel = cpuinfo("GenuineIntel", "fpu sse2 avx avx2 fma avx512f", 2000.0, cores=4)
    value, how = cpu_peak(threads=16, cpuinfo=intel)  # 8 logical CPUs but 4 physical cores
    assert value == pytest.approx(4 * 64 * 2.0 / 1e3) and "4 cores" in how
    assert cpu_peak(threads=2, cpuinfo=intel)[0] == pytest.approx(2 * 64 * 2.0 / 1e3)
    avx2 = cpuinfo("GenuineIntel", "sse2 avx avx2 fma", 3000.0, cores=2)
    assert cpu_peak(threads=2, cpuinfo=avx2)[0] == pytest.approx(2 * 32 * 3.0 / 1e3)
    zen4 = cpuinfo("AuthenticAMD", "sse2 avx avx2 fma avx512f avx512_bf16", 2500.0, cores=2, threads_per_core=1)
    assert cpu_peak(threads=2, cpuinfo=zen4)[0] == pytest.approx(2 * 32 * 2.5 / 1e3)
    assert cpu_peak(threads=2, precision="bf16", cpuinfo=zen4)[0] == pytest.approx(2 * 64 * 2.5 / 1e3)
    assert cpu_peak(threads=1, cpuinfo=cpuinfo("ARM", "fp asimd", 1000.0, 1))[0] is None


def test_train_flops_in_the_record():
    f = train_flops("gluon_resnet50_v1b", {"width": 1.0, "image_size": 224, "precision": "bf16"}, 1000.0,
                    {"device_model": "NVIDIA H200"}, "gpu")
    n = count_macs(get_model("gluon_resnet50_v1b"))
    assert f["macs_per_image"] == n.macs and f["flops_per_image_train"] == 6 * n.macs
    assert f["achieved_tflops"] == pytest.approx(6 * n.macs * 1000 / 1e12)
    assert f["peak_tflops"] == 989.5 and f["mfu"] == pytest.approx(f["achieved_tflops"] / 989.5)
    assert "H200" in f["peak_source"]
    none = train_flops("gluon_resnet50_v1b", {}, float("nan"), {"device_model": "fake-cpu"}, "gpu")
    assert none["achieved_tflops"] is None and none["mfu"] is None and none["peak_tflops"] is None


def _record(backend: str, ips: float, mfu: float | None, jpi: float | None) -> dict:
    return {"schema": SCHEMA, "kind": "measured", "run_id": "r", "case": f"c-{backend}", "status": "ok",
            "config": {"model": "gluon_resnet50_v1b", "backend": backend, "device": "gpu",
                       "settings": {"batch_size": 8, "data": "synthetic"}, "variant": {}},
            "metrics": {"train": {"images_per_s": ips, "ms_per_step": {"mean": 8.0, "p50": 8.0},
                                  "timed_steps": 20,
                                  "flops": {"macs_per_image": 4, "achieved_tflops": 20.0, "peak_tflops": 100.0,
                                            "mfu": mfu, "peak_source": "x"},
                                  "energy": {"source": "nvml-energy", "joules": 10.0, "seconds": 1.0,
                                             "mean_w": 10.0, "j_per_image": jpi, "reason": None}}},
            "env": {"device_model": "NVIDIA H200"}}


def test_report_shows_mfu_and_energy_per_image():
    recs = [_record("torch", 1000.0, 0.2, 0.5), _record("mindspore", 900.0, 0.18, None)]
    assert all(_misshapen(r) is None for r in recs)
    table = comparison_matrix(records_frame(recs))
    by = table.set_index("backend")
    assert by.loc["torch", "MFU (%)"] == "20.0" and by.loc["mindspore", "MFU (%)"] == "18.0"
    assert by.loc["torch", "J/image"] == "0.5" and by.loc["mindspore", "J/image"] == ""
    md = render_markdown(recs)
    assert "| MFU (% of device peak)" in md and "| train energy (J/image)" in md
    bad = _record("torch", 1.0, "high", 0.5)
    assert "mfu" in _misshapen(bad)
