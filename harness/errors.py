"""Errors the user sees as one line (no traceback)."""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["HarnessError", "Unsupported", "DeviceUnavailable", "near"]


class HarnessError(Exception):
    """A problem with the user's input or environment, reported as one line.

    The message names the file, key or path at fault (and a near match where
    there is one); the CLI prints it as ``harness: error: <message>`` and exits 2.
    """


class Unsupported(HarnessError):
    """Raised by a backend that cannot run a case as configured on this device
    (e.g. fp16 AMP in MindSpore on CPU). The case is recorded as *skipped* with
    the message as its reason.
    """


class DeviceUnavailable(Unsupported):
    """Raised by a backend when the requested device is not usable here.

    The runner records the case as *skipped* with this message as its reason,
    e.g. ``"gpu: no CUDA device: torch.cuda.is_available() is False"``.
    """


def near(word: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or ``""``."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else ""
