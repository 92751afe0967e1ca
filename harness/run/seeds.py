"""A suite's ``seeds:`` key: every case run once per seed, so that accuracy can be judged over seeds.

``seeds: 5`` runs each case with seeds 0 to 4; ``seeds: [1, 7, 42]`` with those. Each seed is a case variant of its
own (``...-seed=3``) with ``settings.seed`` set: the reports fold a configuration's seeds into one (the seed does not
identify a case, :data:`harness.results.case_rules.IDENTITY_EXCLUDED`) and test accuracy over them
(:mod:`harness.results.equivalence`). Seeds are the outermost loop, so the backends alternate (seed 0 on each, then
seed 1 on each, ...) and drift on the host hits every backend alike. Given ``seeds:``, a ``seed`` set anywhere else
in the suite (settings, matrix, overrides, include) or by ``--set`` is refused: it would overwrite the seeds.
"""
from __future__ import annotations

from typing import Any

from harness.config import coerce_settings
from harness.errors import HarnessError

__all__ = ["MAX_SEEDS", "suite_seeds", "with_seeds"]

#: The most seeds ``seeds: N`` may ask for (a typo of 500 for 5 would run a hundred times the suite).
MAX_SEEDS = 100


def _sets_seed(doc: dict[str, Any], cli: dict[str, Any]) -> str | None:
    """Where the suite (or ``--set``) sets ``seed`` itself, or None."""
    if "seed" in cli:
        return "--set seed"
    for key in ("settings", "matrix"):
        if isinstance(doc.get(key), dict) and "seed" in doc[key]:
            return f"{key}.seed"
    for key in ("overrides", "include"):
        for i, entry in enumerate(doc.get(key) or []):
            if isinstance(entry, dict) and isinstance(entry.get("settings"), dict) and "seed" in entry["settings"]:
                return f"{key}[{i}].settings.seed"
    return None


def suite_seeds(doc: dict[str, Any], cli: dict[str, Any], where: str) -> list[int]:
    """The seeds a suite file's ``seeds:`` key asks for (``[]`` without one), checked: a count from 1 to
    :data:`MAX_SEEDS`, or a non-empty list of distinct seeds each in the ``seed`` setting's range."""
    if "seeds" not in doc:
        return []
    value, at = doc["seeds"], f"{where}: seeds"
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEEDS:
            raise HarnessError(f"{at}: {value}: a count of seeds must be from 1 to {MAX_SEEDS} (or give a list)")
        seeds = list(range(value))
    elif isinstance(value, list) and value:
        seeds = [coerce_settings({"seed": v}, f"{at}[{i}]")["seed"] for i, v in enumerate(value)]
        twice = next((s for i, s in enumerate(seeds) if s in seeds[:i]), None)
        if twice is not None:
            raise HarnessError(f"{at}: seed {twice} is given twice")
    else:
        raise HarnessError(f"{at}: expected a count (seeds: 5 runs seeds 0-4) or a non-empty list of seeds, "
                           f"got {type(value).__name__} {value!r}")
    other = _sets_seed(doc, cli)
    if other is not None:
        raise HarnessError(f"{at}: {other} is set too; seeds: gives every case its seed (remove one of the two)")
    return seeds


def with_seeds(todo: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]],
               seeds: list[int]) -> list[tuple[str, str, str, dict[str, Any], dict[str, Any]]]:
    """The suite's cases ``(model, backend, device, variant, other settings)`` once per seed, seed outermost, each
    with ``seed`` in its variant (and so in its name and settings); the cases themselves without seeds."""
    if not seeds:
        return todo
    return [(model, backend, device, {**variant, "seed": seed}, rest)
            for seed in seeds for model, backend, device, variant, rest in todo]
