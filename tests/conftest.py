"""Shared fixtures: an outside backend package registered through a dist-info folder."""
from __future__ import annotations

import importlib
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _one_core_per_worker() -> None:
    """Under ``pytest -n N`` each test process (and every case it starts, which inherits its affinity) keeps to a
    core of its own when there are at least N: two processes that each run a framework's thread pool over all the
    cores slow each other down many times over, and the harness sizes its pools from the affinity
    (``threads_set``)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and count.isdigit() and hasattr(os, "sched_setaffinity")):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if int(count) > 1 and len(cpus) >= int(count):
        share = len(cpus) // int(count)
        index = int(worker[2:]) % int(count)
        os.sched_setaffinity(0, cpus[index * share:(index + 1) * share])


_one_core_per_worker()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``first`` run before the rest (in their order): under ``pytest -n 2`` a long test that mostly
    waits (a Slurm time limit) or runs long (the smoke suite) then overlaps the others instead of ending the lane
    alone. Every worker sorts alike, as pytest-xdist requires."""
    items.sort(key=lambda item: item.get_closest_marker("first") is None)


def make_dist(root: Path, name: str, module_file: Path | None, entry_points: dict[str, str]) -> Path:
    """Install-free registration: ``root`` gets ``<name>-0.1.dist-info`` (+ the module file)."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[harness.backends]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    if module_file is not None:
        shutil.copy(module_file, root / module_file.name)
    return root


def register_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, module: str):
    """Register ``tests/fakebackend/<module>.py`` as the backend ``name``, like an installed package, for this
    process and its children; yields the site folder and forgets the module afterwards."""
    root = make_dist(tmp_path / "site", f"harness-{name}", HERE / "fakebackend" / f"{module}.py", {name: module})
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), str(REPO)]))
    importlib.invalidate_caches()
    import harness.backends.probe

    monkeypatch.setattr(harness.backends.probe, "_CACHE", {})  # a test may change what the backend declares
    yield root
    sys.modules.pop(module, None)


@pytest.fixture
def fake_backend(tmp_path, monkeypatch):
    """Register the numpy 'fake' backend for this process and its children."""
    yield from register_backend(tmp_path, monkeypatch, "fake", "harness_fake")


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def have(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


needs_mindspore = pytest.mark.skipif(not have("mindspore"),
                                     reason="mindspore is not installed (pip install -e '.[mindspore]')")


def expected_state_dict(num_classes: int = 1000, width: float = 1.0,
                        counters: bool = True) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of torchvision resnet50 / timm resnet50.gluon_in1k, written from the architecture
    description (not from any model code); ``counters=False`` leaves out ``num_batches_tracked``."""
    def ch(c: int) -> int:
        return max(1, round(c * width))

    out: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        out[f"{name}.weight"] = (cout, cin, k, k)

    def bn(name: str, c: int) -> None:
        for p in ("weight", "bias", "running_mean", "running_var"):
            out[f"{name}.{p}"] = (c,)
        if counters:
            out[f"{name}.num_batches_tracked"] = ()

    stem = ch(64)
    conv("conv1", stem, 3, 7)
    bn("bn1", stem)
    inplanes = stem
    for i, (blocks, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        planes = ch(planes)
        for j in range(blocks):
            p = f"layer{i}.{j}"
            conv(f"{p}.conv1", planes, inplanes, 1)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", planes * 4, planes, 1)
            bn(f"{p}.bn3", planes * 4)
            if j == 0:
                conv(f"{p}.downsample.0", planes * 4, inplanes, 1)
                bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    out["fc.weight"] = (num_classes, inplanes)
    out["fc.bias"] = (num_classes,)
    return out


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for a module: its models are tiny, and on a shared 2-core machine
    OpenMP threads that wait for a busy core make every op hundreds of times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def image_folder(root: Path, layout: dict[str, list[str]], n: int = 2, ext: str = "jpg", size: int = 40) -> Path:
    """``root/<split>/<class>/<i>.<ext>``: ``n`` random RGB images (hardly compressible noise) of ``size`` px per
    class, for ``layout`` = ``{split: [class, ...]}``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, classes in layout.items():
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                    root / split / name / f"{i}.{ext}")
    return root


@pytest.fixture
def cli(capsys):
    """``harness ...`` in this process: ``(exit status, stdout, stderr)``; the signal handlers main() sets are put
    back afterwards."""
    from harness.cli.main import main

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}

    def call(*args: str) -> tuple[int, str, str]:
        rc = main(list(args))
        out = capsys.readouterr()
        return rc, out.out, out.err

    yield call
    for s, handler in saved.items():
        signal.signal(s, handler)
