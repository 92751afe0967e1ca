"""Generated from the model registry: every variant, both frameworks, published parameter counts."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import have

from harness.models.specs import MODELS, ge_kernel, get_model, stage_sizes
from harness_torch.models import build_model

VARIANTS = sorted(MODELS)


def torch_params(spec) -> int:
    return sum(p.numel() for p in build_model(spec).parameters() if p.requires_grad)


@pytest.mark.parametrize("name", VARIANTS)
def test_torch_parameter_count_is_the_published_one(name):
    spec = MODELS[name]
    assert spec.params is not None, "every registered variant carries its published count"
    assert torch_params(spec) == spec.params


@pytest.mark.skipif(not have("mindspore"), reason="mindspore is not installed")
@pytest.mark.parametrize("name", VARIANTS)
def test_mindspore_parameter_count_is_the_published_one(name):
    import harness_mindspore  # noqa: F401, I001 - environment fixes before mindspore
    import mindspore as ms
    from harness_mindspore.models import build_model as ms_build

    ms.set_device("CPU")
    net = ms_build(MODELS[name])
    assert sum(math.prod(p.shape) for p in net.trainable_params()) == MODELS[name].params


@pytest.mark.parametrize("name", VARIANTS)
def test_reduced_width_and_small_images_work(name):
    spec = get_model(name, width=0.25, num_classes=10, image_size=64)
    model = build_model(spec).eval()
    with torch.no_grad():
        outs = model.stages(torch.randn(2, 3, 64, 64))
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 10)
    assert [tuple(o.shape[1:]) for o in outs] == [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]


def test_width_scales_the_stem_and_every_stage_and_drops_the_published_count():
    spec = get_model("gluon_resnet50_v1b", width=0.25)
    assert spec.stem_width == 16 and spec.widths == (16, 32, 64, 128)
    assert spec.params is None  # the published count is of the full-width network only


def test_stage_outputs_at_224():
    assert stage_sizes(224) == (56, 28, 14, 7)


@pytest.mark.parametrize("size, kernels", [(224, (28, 28, 14, 7)), (64, (8, 8, 4, 2)), (160, (20, 20, 10, 5))])
def test_genet_theta_kernels_follow_the_image_size(size, kernels):
    spec = get_model("genet_res50_theta", image_size=size)
    assert tuple(ge_kernel(spec, s) for s in (1, 2, 3, 4)) == kernels
    model = build_model(get_model("genet_res50_theta", width=0.25, image_size=size))
    assert tuple(model.layer1[0].ge.gather[2].kernel_size) == (kernels[0],) * 2
    assert tuple(model.layer4[2].ge.gather[0].kernel_size) == (kernels[3],) * 2


def test_named_facts_from_the_checklist():
    bam = build_model(MODELS["resnet50_bam"])
    assert tuple(bam.bam1.spatial["conv1"].weight.shape) == (16, 16, 3, 3)
    assert bam.bam1.spatial["conv1"].dilation == (4, 4)
    assert not hasattr(bam, "bam4")
    theta = build_model(MODELS["genet_res50_theta"])
    assert tuple(theta.layer1[0].ge.gather[0].weight.shape) == (256, 256, 3, 3)
    assert tuple(theta.layer1[0].ge.gather[2].weight.shape) == (256, 1, 28, 28)
    plus = build_model(MODELS["genet_res50_theta_plus"])
    assert tuple(plus.layer4[0].ge.excite[0].weight.shape) == (128, 2048, 1, 1)
    minus = build_model(MODELS["genet_res50_theta_minus"])
    assert sum(p.numel() for p in minus.layer1[0].ge.parameters()) == 0
