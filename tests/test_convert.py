"""Checkpoint conversion between PyTorch and MindSpore, both ways, checked against the model."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import needs_mindspore

from harness.backends.convert import convert, guess_backend
from harness.errors import HarnessError
from harness.models.specs import get_model
from harness_torch.models import build_model

pytestmark = needs_mindspore
SMALL = dict(model="gluon_resnet50_v1b", width=0.25, num_classes=10)


@pytest.fixture
def torch_ckpt(tmp_path):
    torch.manual_seed(3)
    m = build_model(get_model("gluon_resnet50_v1b", width=0.25, num_classes=10))
    for mod in m.modules():  # non-default values everywhere, so a dropped tensor shows
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.running_mean.normal_()
            mod.running_var.uniform_(0.5, 2.0)
            mod.num_batches_tracked.fill_(11)
    path = tmp_path / "a.pt"
    torch.save(m.state_dict(), path)
    return path


def test_round_trip_reproduces_the_checkpoint_exactly(tmp_path, torch_ckpt):
    out = convert(str(torch_ckpt), str(tmp_path / "b.ckpt"), **SMALL)
    assert (out["from"], out["to"], out["tensors"]) == ("torch", "mindspore", 320)
    convert(str(tmp_path / "b.ckpt"), str(tmp_path / "c.pt"), **SMALL)
    a = torch.load(torch_ckpt, weights_only=True)
    c = torch.load(tmp_path / "c.pt", weights_only=True)
    assert set(a) == set(c)
    for k in a:
        assert a[k].dtype == c[k].dtype and torch.equal(a[k], c[k]), k


def test_refuses_another_shape_naming_the_first_parameter(tmp_path, torch_ckpt):
    with pytest.raises(HarnessError, match=r"parameter 'conv1.weight' has shape \(16, 3, 7, 7\), the model "
                                           r"expects \(32, 3, 7, 7\)"):
        convert(str(torch_ckpt), str(tmp_path / "b.ckpt"), model="gluon_resnet50_v1b", width=0.5, num_classes=10)
    with pytest.raises(HarnessError, match=r"parameter 'fc.weight' has shape \(10, 512\), the model expects "
                                           r"\(1000, 512\)"):
        convert(str(torch_ckpt), str(tmp_path / "b.ckpt"), model="gluon_resnet50_v1b", width=0.25)
    assert not (tmp_path / "b.ckpt").exists()


def test_refuses_another_model(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "x.pt")
    with pytest.raises(HarnessError, match=r"parameter 'conv1.weight' .* is missing"):
        convert(str(tmp_path / "x.pt"), str(tmp_path / "y.ckpt"), **SMALL)


def test_bad_inputs(tmp_path):
    with pytest.raises(HarnessError, match=r"checkpoint '.*nope.pt': no such file"):
        convert(str(tmp_path / "nope.pt"), str(tmp_path / "y.ckpt"), **SMALL)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(HarnessError, match="not a PyTorch checkpoint loadable with weights_only=True"):
        convert(str(tmp_path / "junk.pt"), str(tmp_path / "y.ckpt"), **SMALL)
    with pytest.raises(HarnessError, match=r"cannot tell the framework from '.h5'"):
        guess_backend("w.h5")


def test_cli_one_line_error(tmp_path, torch_ckpt):
    out = subprocess.run([sys.executable, "-m", "harness.cli.main", "convert", str(torch_ckpt),
                          str(tmp_path / "b.ckpt"), "--model", "gluon_resnet50_v1b", "--width", "0.5",
                          "--num-classes", "10"],
                         capture_output=True, check=False, text=True, timeout=300)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "conv1.weight" in out.stderr
