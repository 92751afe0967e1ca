"""Errors the user sees as one line (no traceback)."""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["HarnessError", "Unsupported", "DeviceUnavailable", "near", "one_line"]


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


def one_line(message: str | BaseException, limit: int = 1000, *, first_line: bool = False) -> str:
    """``message`` (or an exception's message) as one line of at most about ``limit`` characters: a value quoted
    from a hostile file (a huge list, text with line breaks) cannot flood the terminal or a record's reason.

    This is the one place an error is made one line; the harness used to do it in several, some joining every
    line and some keeping the first. Both are kept, chosen by the caller: by default every line is joined (the
    harness's own messages and parsers' put the facts on several lines), with ``first_line`` only the first
    non-blank line is kept (a deep-learning framework puts a C++ stack trace or hints after the line that says
    what went wrong). An exception with no message gives its type's name, so a reason is never empty."""
    text = str(message)
    if first_line:
        text = next((line for line in text.splitlines() if line.strip()), "")
    text = " ".join(text.split())
    if not text and isinstance(message, BaseException):
        text = type(message).__name__
    if len(text) <= limit:
        return text
    keep = limit * 2 // 3
    return f"{text[:keep]} ... [{len(text) - limit} characters left out] ... {text[-(limit - keep):]}"
