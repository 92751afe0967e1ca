"""Files of named NumPy arrays, and reading any checkpoint file with its failures as one line naming it.

The neutral format is ``.npz`` (``numpy.savez``), read without pickle: the core's default
``harness_read_checkpoint``/``harness_write_checkpoint`` (:mod:`harness.backends.defaults`), ``settings.weights``
files ending in ``.npz``, and the train-step states of :func:`harness.run.checkpoints.save_arrays`.
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from harness.errors import HarnessError, one_line

__all__ = ["NPZ", "read_checked", "read_npz", "write_npz"]

NPZ = ".npz"
T = TypeVar("T")


def read_checked(path: str, read: Callable[[str], T], kind: str) -> T:
    """``read(path)``, with a missing file and whatever ``read`` raises (other than HarnessError) as one line:
    ``checkpoint 'PATH': no such file`` or ``checkpoint 'PATH': not KIND (ErrorType: first line)``."""
    if not os.path.isfile(path):
        raise HarnessError(f"checkpoint '{path}': no such file")
    try:
        return read(path)
    except HarnessError:
        raise
    except Exception as exc:  # noqa: BLE001 - readers raise many types for a foreign or corrupt file
        raise HarnessError(f"checkpoint '{path}': not {kind} ({type(exc).__name__}: "
                           f"{one_line(str(exc), 200, first_line=True)})") from None


def _load_npz(path: str) -> dict[str, np.ndarray]:
    f = np.load(path, allow_pickle=False)
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError("a single array (.npy), not named arrays")
    with f:
        return {k: np.array(f[k]) for k in f.files}


def read_npz(path: str) -> dict[str, np.ndarray]:
    """The named arrays of the ``.npz`` at ``path`` (no pickle); HarnessError naming the file otherwise."""
    return read_checked(path, _load_npz, "a .npz of named arrays")


def write_npz(path: str, arrays: Mapping[str, Any]) -> str:
    """Write ``arrays`` (names to arrays or scalars) as a ``.npz`` at ``path`` (``.npz`` added unless it ends so);
    returns the path written. Values NumPy would have to pickle are refused, naming the entry."""
    if not path.endswith(NPZ):
        path += NPZ
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        a = np.asarray(value)
        if a.dtype.hasobject:
            raise HarnessError(f"'{path}': entry '{name}' is not a numeric array ({type(value).__name__})")
        out[name] = a
    try:  # as numpy.savez writes it (one NAME.npy per entry), with no name it could mistake for an argument
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for name, a in out.items():
                with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, a, allow_pickle=False)
    except OSError as exc:
        raise HarnessError(f"'{path}': cannot write: {exc.strerror}") from None
    return path
