"""Reading the MindSpore backend's checkpoint files (weights files and training states)."""
from __future__ import annotations

from typing import Any

import mindspore as ms

from harness.backends.arrays import read_checked

__all__ = ["TRAIN_STATE", "load_checkpoint"]

#: The file of a training checkpoint (:class:`harness_mindspore.train.TrainStep`), inside the folder the core gives.
TRAIN_STATE = "train_state.ckpt"


def load_checkpoint(path: str) -> dict[str, Any]:
    """``mindspore.load_checkpoint``, a missing file and its failures as one-line errors naming ``path``
    (:func:`harness.backends.arrays.read_checked`; the backend's one checkpoint reader: weights files and training
    states)."""
    return read_checked(path, ms.load_checkpoint, "a MindSpore checkpoint")
