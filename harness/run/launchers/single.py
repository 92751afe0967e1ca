"""``single``: one ``python -m harness.run.worker`` process (``devices: 1``, one node)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.config import Case
from harness.errors import HarnessError
from harness.run.launchers.base import WORKER, Launcher

__all__ = ["Single"]


class Single(Launcher):
    name = "single"
    help = "one worker process (devices: 1, one node)"
    multi_device = False

    def command(self, case: Case, case_file: Path, result_file: Path,
                case_dir: Path) -> tuple[list[str], dict[str, str]]:
        if case.settings.devices * case.settings.nodes > 1:
            raise HarnessError(f"backend '{case.backend}' has no multi-device launcher")
        return [*WORKER, str(case_file), str(result_file)], {}

    def collect(self, case: Case, result_file: Path, case_dir: Path) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] | None = json.loads(result_file.read_text())
            return result
        except (OSError, ValueError):
            return None
