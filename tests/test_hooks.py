"""The hook contract: discovery through entry points, one backend per process, clear errors."""
from __future__ import annotations

import importlib
import inspect
import sys

import pytest
from conftest import HERE, make_dist

from harness.backends import hookspecs
from harness.backends.loading import backend_entry_points, load_backend
from harness.errors import HarnessError

GOOD = (HERE / "fakebackend" / "harness_fake.py").read_text()


def register(tmp_path, monkeypatch, name: str, source: str, module: str) -> None:
    root = tmp_path / f"site_{name}"
    make_dist(root, f"harness-{name}", None, {name: module})
    (root / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()


def test_every_spec_is_typed_and_documented():
    specs = [n for n in dir(hookspecs) if n.startswith("harness_")]
    assert set(hookspecs.REQUIRED_HOOKS) <= set(specs)
    for name in specs:
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and len(fn.__doc__.split()) > 15, name
        sig = inspect.signature(fn)
        assert sig.return_annotation is not inspect.Signature.empty, name
        assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values()), name
        assert "result" in fn.__doc__ or "merge" in fn.__doc__, f"{name}: how results combine"


def test_outside_package_is_discovered_and_only_the_named_backend_loads(tmp_path, monkeypatch, fake_backend):
    register(tmp_path, monkeypatch, "bomb", "raise RuntimeError('must not be imported')\n", "harness_bomb")
    assert {"fake", "bomb", "torch"} <= set(backend_entry_points())
    pm = load_backend("fake")
    assert "harness_bomb" not in sys.modules
    assert pm.hook.harness_backend_info()["name"] == "fake"
    with pytest.raises(HarnessError, match="backend 'bomb' .*cannot be imported|must not be imported"):
        load_backend("bomb")


def test_unknown_backend_suggests(fake_backend):
    with pytest.raises(HarnessError, match="unknown backend 'fak'; did you mean 'fake'"):
        load_backend("fak")


def test_missing_required_hook(tmp_path, monkeypatch):
    src = GOOD.replace("@hookimpl\ndef harness_export", "def harness_export")
    register(tmp_path, monkeypatch, "noexport", src, "harness_noexport")
    with pytest.raises(HarnessError, match="backend 'noexport' does not implement required hook harness_export"):
        load_backend("noexport")


def test_hook_with_an_argument_the_spec_lacks(tmp_path, monkeypatch):
    src = GOOD.replace("def harness_synchronize(device):", "def harness_synchronize(device, stream):")
    register(tmp_path, monkeypatch, "badsig", src, "harness_badsig")
    with pytest.raises(HarnessError, match=r"backend .badsig.: .*\{.stream.\} are declared in the hookimpl"):
        load_backend("badsig")


def test_misspelled_hook(tmp_path, monkeypatch):
    src = GOOD + "\n\n@hookimpl\ndef harness_synchronise(device):\n    return True\n"
    register(tmp_path, monkeypatch, "typo", src, "harness_typo")
    with pytest.raises(HarnessError, match="backend 'typo'.*harness_synchronise"):
        load_backend("typo")


def test_torch_backend_implements_the_whole_contract():
    pm = load_backend("torch")
    for hook in hookspecs.REQUIRED_HOOKS:
        assert getattr(pm.hook, hook).get_hookimpls(), hook
    info = pm.hook.harness_backend_info()
    assert info["name"] == "torch" and "gluon_resnet50_v1b" in info["models"]
    assert pm.hook.harness_probe_device(device="cpu")["available"] is True
