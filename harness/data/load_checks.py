"""The data a suite names, checked when the suite loads: the folder layout, the class folders of each split, and
the classifier's outputs against the classes (one check, before any case runs; the data streams do not repeat it).
"""
from __future__ import annotations

import os
from typing import Any

from harness.config import Settings
from harness.data.folders import class_folders
from harness.data.tiny import TINY_CLASSES
from harness.errors import HarnessError, near

__all__ = ["check_data"]


def _show(names: list[str]) -> str:
    return (", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")) or "none"


def _check_classes(count: int, settings: dict[str, Any], where: str) -> None:
    """More class folders than ``num_classes`` outputs: the one check of it, when the suite loads (the data
    streams, the core's and each backend's, used to repeat it when a case ran). A label past the classifier's
    outputs can be neither trained nor scored."""
    num_classes = settings.get("num_classes", Settings.num_classes)
    if count > num_classes:
        raise HarnessError(f"{where}: num_classes: {num_classes}, but the data has {count} classes: a label past "
                           f"the classifier's outputs can be neither trained nor scored (set num_classes: {count})")


def check_data(settings: dict[str, Any], where: str) -> None:
    if settings.get("data") == "tiny" and not settings.get("data_root"):
        _check_classes(TINY_CLASSES, settings, f"{where}: data 'tiny'")
    if settings.get("data") != "folder":
        return
    root = settings.get("data_root")
    if not root:
        raise HarnessError(f"{where}: data_root: required when data is 'folder'")
    if not os.path.isdir(root):
        raise HarnessError(f"{where}: data_root '{root}': no such folder")
    scenario = settings.get("scenario")
    train_only = scenario == "data" or not settings.get("eval", True)
    wanted = ["val"] if scenario == "eval" else ["train"] if train_only else ["train", "val"]
    for split in wanted:
        if not os.path.isdir(os.path.join(root, split)):
            try:
                found = [e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")]
            except OSError:
                found = []
            raise HarnessError(f"{where}: data_root '{root}': no '{split}' folder "
                               f"(expected {root}/{split}/<class>/*.JPEG){near(split, found)}")
    try:
        classes = {split: class_folders(root, split) for split in wanted}
    except HarnessError as exc:
        raise HarnessError(f"{where}: {exc}") from None
    if len(wanted) == 2 and classes["train"] != classes["val"]:
        only_train, only_val = sorted(set(classes["train"]) - set(classes["val"])), sorted(set(classes["val"]) -
                                                                                          set(classes["train"]))
        raise HarnessError(f"{where}: data_root '{root}': train and val have different class folders (only in train: "
                           f"{_show(only_train)}; only in val: {_show(only_val)}): a label would mean another class in "
                           "each split")
    count = len(classes[wanted[0]])
    if count < 2:
        raise HarnessError(f"{where}: data_root '{root}': {count} class folder(s) in {wanted[0]}/: accuracy needs at "
                           "least two classes (every prediction of one class is right)")
    _check_classes(count, settings, f"{where}: data_root '{root}'")
