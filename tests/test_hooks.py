"""The hook contract: discovery through entry points, one backend per process, clear errors."""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import sys

import numpy as np
import pluggy
import pytest
from conftest import HERE, make_dist

from harness import hookimpl
from harness.backends import hookspecs
from harness.backends.defaults import PLUGIN_NAME, CoreDefaults
from harness.backends.loading import backend_entry_points, load_backend, own_hooks, required_hooks
from harness.config import Case, Settings
from harness.errors import DeviceUnavailable, HarnessError
from harness.measure.environment import cpu_model

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
    with pytest.raises(HarnessError, match=r"backend 'bomb' .*cannot be imported|must not be imported"):
        load_backend("bomb")


def test_unknown_backend_suggests(fake_backend):
    with pytest.raises(HarnessError, match="unknown backend 'fak'; did you mean 'fake'"):
        load_backend("fak")


def _without(source: str, hook: str) -> str:
    """The fake's source with ``hook`` no longer a hookimpl (the function stays, unmarked)."""
    assert f"@hookimpl\ndef {hook}(" in source, hook
    return source.replace(f"@hookimpl\ndef {hook}(", f"def {hook}(")


#: (what the fake declares, changed in its source; the hook left out; the one-line refusal, or None: it loads)
DECLARED = [
    ({}, "harness_export", "backend 'x' declares supports.export: npy but does not implement harness_export"),
    ({'"export": ["npy"]': '"export": []'}, "harness_export", None),
    ({}, "harness_profile", "backend 'x' declares supports.profile but does not implement harness_profile"),
    ({'"profile": True,': '"profile": False,'}, "harness_profile", None),
    ({}, "harness_train_step", "backend 'x' declares scenarios: train, eval but does not implement harness_train_step"),
    ({'"devices": ["cpu"],': '"devices": ["cpu"], "scenarios": ["eval"],'}, "harness_train_step", None),
    ({'"devices": ["cpu"],': '"devices": ["cpu", "gpu"],'}, "harness_probe_device",
     "backend 'x' declares devices: gpu but does not implement harness_probe_device"),
    ({}, "harness_probe_device", None),
    ({'"devices": ["cpu"],': '"devices": ["cpu"], "launcher": "torchrun",'}, "harness_setup",
     "backend 'x' declares launcher: torchrun but does not implement harness_setup"),
    ({}, "harness_setup", None),
    ({}, "harness_synchronize", "backend 'x' does not implement required hook harness_synchronize"),
    ({}, "harness_to_host", None),
]


@pytest.mark.parametrize(("changes", "hook", "refusal"), DECLARED)
def test_a_hook_is_required_by_what_the_backend_declares(tmp_path, monkeypatch, changes, hook, refusal):
    src = _without(GOOD, hook)
    for old, new in changes.items():
        assert old in src, old
        src = src.replace(old, new)
    module = "harness_required"
    register(tmp_path, monkeypatch, "x", src, module)
    try:
        if refusal is None:
            pm = load_backend("x")
            assert hook not in own_hooks(pm) and hook not in required_hooks(pm.hook.harness_backend_info())
        else:
            with pytest.raises(HarnessError) as exc:
                load_backend("x")
            assert str(exc.value) == refusal
    finally:
        sys.modules.pop(module, None)


def test_required_hooks_of_a_minimal_declaration():
    """A CPU training backend with no exports, profiler or launcher needs the two hooks of every backend and those
    of its scenarios; the core answers the rest."""
    info = {"name": "m", "framework": "f", "framework_version": "1", "version": "1", "models": [], "devices": ["cpu"]}
    need = required_hooks(info)
    assert list(need) == [*hookspecs.REQUIRED_HOOKS, *hookspecs.SCENARIO_HOOKS["train"]]
    assert not set(need) & set(hookspecs.DEFAULTED_HOOKS)
    assert len(need) == 9
    inference_only = {**info, "scenarios": ["inference"], "runtimes": {"ort": "onnx"}, "devices": ["cpu", "gpu"]}
    assert set(required_hooks(inference_only)) == {"harness_backend_info", "harness_synchronize",
                                                   "harness_probe_device", "harness_inference_session"}
    own_exports = {**inference_only, "scenarios": ["inference", "export"]}  # its runtime loads what it exports
    assert required_hooks(own_exports)["harness_export"] == "runtimes that load exports: onnx"


def test_hook_with_an_argument_the_spec_lacks(tmp_path, monkeypatch):
    src = GOOD.replace("def harness_synchronize(device):", "def harness_synchronize(device, stream):")
    register(tmp_path, monkeypatch, "badsig", src, "harness_badsig")
    with pytest.raises(HarnessError, match=r"backend .badsig.: .*\{.stream.\} are declared in the hookimpl"):
        load_backend("badsig")


def test_misspelled_hook(tmp_path, monkeypatch):
    src = GOOD + "\n\n@hookimpl\ndef harness_synchronise(device):\n    return True\n"
    register(tmp_path, monkeypatch, "typo", src, "harness_typo")
    with pytest.raises(HarnessError, match=r"backend 'typo'.*harness_synchronise"):
        load_backend("typo")


def test_torch_backend_implements_the_whole_contract():
    pm = load_backend("torch")
    for hook in hookspecs.REQUIRED_HOOKS:
        assert getattr(pm.hook, hook).get_hookimpls(), hook
    info = pm.hook.harness_backend_info()
    assert info["name"] == "torch" and "gluon_resnet50_v1b" in info["models"]
    assert pm.hook.harness_probe_device(device="cpu")["available"] is True


# --- the core's answers to the hooks a backend leaves out (harness.backends.defaults) ---------------------------------

class _Cpu:
    """A backend that declares the CPU and answers ``harness_to_host`` for strings only."""

    @hookimpl
    def harness_backend_info(self):
        return {"name": "stub", "framework": "Stub", "framework_version": "2.0", "version": "0.3", "models": [],
                "devices": ["cpu"]}

    @hookimpl
    def harness_synchronize(self, device):
        return True

    @hookimpl
    def harness_to_host(self, value):
        return 7.0 if isinstance(value, str) else None  # None: the core answers

    @hookimpl
    def harness_environment(self, case, device):
        return {"device_model": "the stub's own", "stub_threads": 3}


def _with_defaults(*plugins) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(CoreDefaults(pm.hook), name=PLUGIN_NAME)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def test_a_declared_scenario_of_another_package_runs_only_with_its_hooks(monkeypatch):
    """Loading a backend checks the built-in scenarios' hooks; another package's scenario is checked when a suite
    loads, against the hooks the probe found, declared or not."""
    from harness.run.scenarios import SCENARIOS, Scenario
    from harness.run.validate import runs_scenario

    class Outside(Scenario):
        name = "outside"
        hooks = ("harness_build_model", "harness_predict")

    monkeypatch.setitem(SCENARIOS._loaded, "outside", Outside())
    info = {"scenarios": ["train", "outside"], "hooks": ["harness_build_model", "harness_to_host"]}
    assert runs_scenario(info, "train") and not runs_scenario(info, "eval")
    assert not runs_scenario(info, "outside")
    assert runs_scenario({**info, "hooks": [*info["hooks"], "harness_predict"]}, "outside")
    assert runs_scenario({**info, "scenarios": ["train"], "hooks": [*info["hooks"], "harness_predict"]}, "outside")


def test_the_defaults_are_the_hooks_the_contract_says_the_core_answers():
    pm = _with_defaults()
    assert own_hooks(pm) == []
    answered = sorted(name for name, caller in vars(pm.hook).items() if caller.get_hookimpls())
    assert answered == sorted(hookspecs.DEFAULTED_HOOKS)
    assert all(impl.trylast for name in answered for impl in getattr(pm.hook, name).get_hookimpls())
    required = {h for rule in hookspecs.SCENARIO_HOOKS.values() for h in rule} | set(hookspecs.REQUIRED_HOOKS)
    assert not required & set(hookspecs.DEFAULTED_HOOKS)


def test_the_core_answers_the_hooks_a_backend_leaves_out():
    pm = _with_defaults(_Cpu())
    h = pm.hook
    assert own_hooks(pm) == ["harness_backend_info", "harness_environment", "harness_synchronize", "harness_to_host"]
    assert h.harness_probe_device(device="cpu") == {"available": True, "reason": None, "model": cpu_model(), "count": 1}
    gpu = h.harness_probe_device(device="gpu")
    assert gpu["available"] is False and gpu["reason"] == "no gpu: backend 'stub' runs on cpu"
    case = Case(name="c", model="gluon_resnet50_v1b", backend="stub", device="cpu", settings=Settings())
    assert h.harness_setup(case=case) == "cpu"
    with pytest.raises(DeviceUnavailable, match=r"^no gpu: backend 'stub' runs on cpu$"):
        h.harness_setup(case=dataclasses.replace(case, device="gpu"))
    # the backend's answer wins; where it returns None, the core converts through NumPy
    assert h.harness_to_host(value="mine") == 7.0
    assert h.harness_to_host(value=np.float32(2.5)) == 2.5 and h.harness_to_host(value=np.array([[3]])) == 3.0
    assert h.harness_to_host(value=(np.int64(4), 0.5, True)) == [4.0, 0.5, 1.0]
    with pytest.raises(HarnessError, match=r"^harness_to_host: the core reads one number per value, got ndarray of "
                                           r"shape \(3,\) .*implement harness_to_host"):
        h.harness_to_host(value=np.zeros(3))
    # the record's env: the core's fields first, the backend's merged over them (as the worker merges)
    env: dict = {}
    for part in h.harness_environment(case=case, device="cpu")[::-1]:
        env.update(part)
    assert env == {"framework": "Stub", "framework_version": "2.0", "backend_version": "0.3",
                   "device_model": "the stub's own", "device_count": 1, "stub_threads": 3}


def test_the_core_keeps_weights_files_as_npz_and_names_the_file_it_cannot_read(tmp_path):
    h = _with_defaults(_Cpu()).hook
    weights = {"fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "bn1.num_batches_tracked": np.int64(5)}
    written = h.harness_write_checkpoint(weights=weights, path=str(tmp_path / "w"))
    assert written == str(tmp_path / "w.npz")
    back = h.harness_read_checkpoint(path=written)
    assert set(back) == set(weights) and all(back[k].dtype == np.asarray(v).dtype and np.array_equal(back[k], v)
                                             for k, v in weights.items())
    assert h.harness_write_checkpoint(weights=weights, path=str(tmp_path / "kept.npz")) == str(tmp_path / "kept.npz")
    with pytest.raises(HarnessError, match=f"^checkpoint '{re.escape(str(tmp_path))}/nope.npz': no such file$"):
        h.harness_read_checkpoint(path=str(tmp_path / "nope.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not an archive")
    np.save(tmp_path / "one.npy", np.zeros(3))
    for bad in ("junk.npz", "one.npy"):
        where = re.escape(str(tmp_path / bad))
        with pytest.raises(HarnessError, match=f"^checkpoint '{where}': not a .npz of named arrays") as exc:
            h.harness_read_checkpoint(path=str(tmp_path / bad))
        assert "\n" not in str(exc.value)
    with pytest.raises(HarnessError, match="entry 'meta' is not a numeric array"):
        h.harness_write_checkpoint(weights={"meta": {"a": 1}}, path=str(tmp_path / "obj"))
