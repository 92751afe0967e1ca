"""A tiny, learnable ImageNet-layout JPEG dataset, generated deterministically.

:func:`make_tiny_dataset` writes ``root/train/class_XX/img_YYYY.JPEG`` and
``root/val/...`` so that tests and CI exercise the real decode path. The task:
every class owns a hue (evenly spaced around the hue circle); an image shows
2-5 filled ellipses/rectangles in that hue (saturation and value drawn from a
band) on low-saturation noise of some other hue. Hue survives random-resized
crop, flips and brightness/contrast/saturation jitter, so a small CNN reaches
accuracy well above chance within a few dozen SGD steps.

Generation is idempotent and atomic: the images go to ``root + ".tmp-<pid>"``,
``tiny.json`` (the parameters) is written last, and the folder is renamed into
place, so an interrupted run leaves no half-written ``root`` behind.
"""
from __future__ import annotations

import colorsys
import json
import os
import shutil
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from harness.errors import HarnessError

__all__ = ["make_tiny_dataset", "META_NAME", "TINY_CLASSES"]

#: The parameters file written last into a generated dataset.
META_NAME = "tiny.json"
#: Classes of the tiny dataset ``harness run`` makes for ``data: tiny`` (the suite loader checks num_classes by it).
TINY_CLASSES = 10
_FORMAT = 1  # bump when the pictures change, so old caches are regenerated
_SPLITS = (("train", 0), ("val", 1))


def _rgb(hue: float, sat: float, val: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, sat, val)
    return round(r * 255), round(g * 255), round(b * 255)


def _picture(rng: np.random.Generator, hue: float, spacing: float, size: int) -> Image.Image:
    """One image of the class with hue ``hue`` (hues are ``spacing`` apart, in turns)."""
    bg_hue = hue + rng.uniform(0.5 * spacing, 1.0 - 0.5 * spacing)  # any hue but the class's own
    img = Image.new("RGB", (size, size), _rgb(bg_hue, rng.uniform(0.0, 0.1), rng.uniform(0.3, 0.8)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        colour = _rgb(hue + rng.uniform(-0.15, 0.15) * spacing, rng.uniform(0.7, 1.0), rng.uniform(0.5, 0.8))
        w, h = rng.uniform(0.35, 0.7, size=2) * size
        cx, cy = rng.uniform(0.15, 0.85, size=2) * size
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    noise = rng.normal(0.0, rng.uniform(4.0, 16.0), size=(size, size, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def _generate(out: str, params: dict[str, Any]) -> None:
    """Write the whole dataset into the fresh folder ``out``, ``tiny.json`` last."""
    classes, seed, size = params["classes"], params["seed"], params["size"]
    cw = max(2, len(str(classes - 1)))
    for split, split_id in _SPLITS:
        count = params[f"{split}_per_class"]
        iw = max(4, len(str(count - 1)))
        for c in range(classes):
            folder = os.path.join(out, split, f"class_{c:0{cw}d}")
            os.makedirs(folder)
            for i in range(count):
                rng = np.random.default_rng([seed, split_id, c, i])
                img = _picture(rng, c / classes, 1.0 / classes, size)
                img.save(os.path.join(folder, f"img_{i:0{iw}d}.JPEG"), format="JPEG", quality=90)
    with open(os.path.join(out, META_NAME), "w", encoding="utf-8") as f:
        json.dump(params, f, indent=1, sort_keys=True)
        f.write("\n")


def _read_meta(root: str) -> dict[str, Any] | None:
    """The parameters of a dataset this module generated at ``root``, else None."""
    try:
        with open(os.path.join(root, META_NAME), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("generator") == __name__ else None


def _complete(root: str, params: dict[str, Any]) -> bool:
    return _read_meta(root) == params and all(os.path.isdir(os.path.join(root, s)) for s, _ in _SPLITS)


def make_tiny_dataset(root: str, *, classes: int = TINY_CLASSES, train_per_class: int = 32, val_per_class: int = 10,
                      size: int = 64, seed: int = 0) -> str:
    """Write the tiny dataset to ``root`` (ImageNet layout, JPEG quality 90); return ``root``.

    Returns at once when ``root`` already holds this dataset with the same
    parameters. A dataset this module made with other parameters is replaced.
    Raises :class:`HarnessError` naming ``root`` when it is a file or a folder
    with anything else in it: user files are never deleted.
    """
    root = os.fspath(root)
    for name, value, least in (("classes", classes, 2), ("train_per_class", train_per_class, 1),
                               ("val_per_class", val_per_class, 1), ("size", size, 8)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise HarnessError(f"tiny dataset '{root}': {name} must be an integer >= {least}, got {value!r}")
    params = {"generator": __name__, "format": _FORMAT, "classes": classes, "train_per_class": train_per_class,
              "val_per_class": val_per_class, "size": size, "seed": int(seed)}
    if os.path.exists(root):
        if not os.path.isdir(root):
            raise HarnessError(f"tiny dataset '{root}': exists and is not a folder")
        if _complete(root, params):
            return root
        entries = sorted(os.listdir(root))
        if entries and (_read_meta(root) is None or not set(entries) <= {"train", "val", META_NAME, ".harness"}):
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise HarnessError(f"tiny dataset '{root}': folder is not empty and holds no tiny dataset "
                               f"({shown}); give an empty or new folder")
    tmp = f"{root.rstrip(os.sep) or root}.tmp-{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(root)), exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        _generate(tmp, params)
        _install(tmp, root, params)
    except OSError as exc:
        raise HarnessError(f"tiny dataset '{root}': cannot write: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _install(tmp: str, root: str, params: dict[str, Any]) -> None:
    """Move the finished ``tmp`` to ``root`` (absent, empty, or an older tiny dataset)."""
    if os.path.isdir(root):
        if _complete(root, params):  # another process finished first
            return
        if os.listdir(root):
            old = f"{tmp}.old"
            os.rename(root, old)
            try:
                os.rename(tmp, root)
            except OSError:
                os.rename(old, root)
                raise
            shutil.rmtree(old, ignore_errors=True)
            return
        os.rmdir(root)
    try:
        os.rename(tmp, root)
    except OSError:
        if not _complete(root, params):
            raise
