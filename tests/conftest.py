"""Shared fixtures: an outside backend package registered through a dist-info folder."""
from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


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


@pytest.fixture
def fake_backend(tmp_path, monkeypatch):
    """Register the numpy 'fake' backend for this process and its children."""
    root = make_dist(tmp_path / "site", "harness-fake", HERE / "fakebackend" / "harness_fake.py",
                     {"fake": "harness_fake"})
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), str(REPO)]))
    importlib.invalidate_caches()
    yield root
    sys.modules.pop("harness_fake", None)


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def have(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


needs_mindspore = pytest.mark.skipif(not have("mindspore"), reason="mindspore is not installed (pip install -e '.[mindspore]')")
