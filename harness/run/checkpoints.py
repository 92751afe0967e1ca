"""Training checkpoints, the core's side: when to save, where, what the core itself keeps, and which to resume.

A case trained with ``checkpoint_every`` (steps) or ``checkpoint_every_epochs`` saves its state between steps,
outside the timed intervals, and once more at the end. Inside the case folder (the worker's working folder)::

    checkpoints/rank0/step_000000040/meta.json      the core's state (below)
    checkpoints/rank0/step_000000040/<backend files> the train step's save(): model, optimizer, schedule
                                                     position, loss scale, framework RNG

Each rank keeps its own folder, so ranks never wait for each other to save. A checkpoint is written as
``step_N.partial`` and renamed to ``step_N`` once every file is written and fsynced (``meta.json`` last): a kill
at any moment leaves either a whole checkpoint or a ``.partial`` folder, which is ignored and removed. The last
``checkpoint_keep`` are kept.

``meta.json`` holds what the core needs to go on as if never stopped: the steps done and the data position
(epoch, batch within it), the host value of every loss so far, the timed step samples so far, the first-step
time, earlier resumes, and the digest of the settings that shape the training. When the case runs again in the
same folder (``harness run --resume``), training resumes from the newest step every rank has; checkpoints of
other settings are moved aside to ``checkpoints.stale-<digest>`` (kept, never used).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.arrays import read_npz, write_npz
from harness.config import Case
from harness.errors import HarnessError
from harness.models.weights import check_weights

__all__ = ["SCHEMA", "ROOT", "STATE_FILE", "interval", "training_digest", "Checkpoints", "save_arrays", "load_arrays"]

SCHEMA = 1
ROOT = "checkpoints"
META = "meta.json"

#: Settings that do not change the training trajectory: a checkpoint stays valid when only these change.
#: (``latency_warmup_s``, inference's warm-up time, is here so that adding it left earlier checkpoints valid.)
_NOT_TRAJECTORY = frozenset({"timeout", "checkpoint_every", "checkpoint_every_epochs", "checkpoint_keep", "eval",
                             "eval_batches", "export", "workers", "threads", "max_bad_images", "repeats",
                             "latency_warmup_s"})


def interval(case: Case, steps_per_epoch: int) -> int | None:
    """Steps between checkpoints, or None when the case does not checkpoint."""
    s = case.settings
    if s.checkpoint_every is not None:
        return s.checkpoint_every
    if s.checkpoint_every_epochs is not None:
        return max(1, round(s.checkpoint_every_epochs * steps_per_epoch))
    return None


def training_digest(case: Case) -> str:
    """The identity of a training run: model, backend, device and every setting that shapes it."""
    settings = {k: v for k, v in case.to_dict()["settings"].items() if k not in _NOT_TRAJECTORY}
    ident = {"model": case.model, "backend": case.backend, "device": case.device, "settings": settings}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _fsync_tree(path: Path) -> None:
    for f in sorted(path.iterdir()):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpoints:
    """The checkpoints of one rank of one case, under ``folder/checkpoints/rank<rank>``."""

    def __init__(self, case: Case, folder: str | os.PathLike[str], every: int, rank: int = 0, world: int = 1) -> None:
        s = case.settings
        self.case, self.every, self.rank, self.world = case, every, rank, world
        self.keep = s.checkpoint_keep
        self.base = Path(folder) / ROOT
        self.root = self.base / f"rank{rank}"
        self.digest = training_digest(case)

    def due(self, done: int, total: int) -> bool:
        """Whether to save after ``done`` steps (every ``every`` steps, and at the end)."""
        return done > 0 and (done % self.every == 0 or done == total)

    @staticmethod
    def _steps(root: Path) -> dict[int, Path]:
        out: dict[int, Path] = {}
        if root.is_dir():
            for p in root.iterdir():
                name = p.name
                if name.startswith("step_") and name[5:].isdigit() and (p / META).is_file():
                    out[int(name[5:])] = p
        return out

    def _set_aside(self, why: str) -> None:
        stale = self.base.with_name(f"{ROOT}.stale-{self.digest[:8]}-{int(time.time())}")
        if self.rank == 0:
            os.replace(self.base, stale)
        print(f"harness: {self.base}: {why}; moved to {stale.name}, starting from step 0", file=sys.stderr, flush=True)

    def latest(self) -> tuple[int, Path, dict[str, Any]] | None:
        """The newest checkpoint that every rank has: ``(steps done, this rank's folder, its meta)``, or None."""
        if not self.base.is_dir():
            return None
        per_rank = [self._steps(self.base / f"rank{r}") for r in range(self.world)]
        common = set(per_rank[0]).intersection(*per_rank[1:])
        if not common:
            return None
        done = max(common)
        path = per_rank[self.rank][done]
        try:
            meta = json.loads((path / META).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise HarnessError(f"checkpoint '{path / META}': unreadable ({exc})") from None
        if meta.get("digest") != self.digest:
            self._set_aside("checkpoints of other settings (a changed case)")
            return None
        if meta.get("schema") != SCHEMA or meta.get("step") != done or meta.get("world") != self.world:
            raise HarnessError(f"checkpoint '{path / META}': schema {meta.get('schema')}, step {meta.get('step')}, "
                               f"world {meta.get('world')}: expected schema {SCHEMA}, step {done}, world {self.world}")
        return done, path, meta

    def save(self, done: int, steps_per_epoch: int, state: dict[str, Any],
             write: Callable[[str], Any]) -> Path:
        """Write checkpoint ``step_<done>``: ``write(folder)`` writes the backend's files, then ``meta.json``
        (``state`` plus position and identity) goes last; the folder is renamed into place and old ones pruned."""
        final = self.root / f"step_{done:09d}"
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        files = write(str(partial))
        meta = {"schema": SCHEMA, "step": done, "epoch": done // steps_per_epoch, "batch": done % steps_per_epoch,
                "steps_per_epoch": steps_per_epoch, "digest": self.digest, "world": self.world, "rank": self.rank,
                "backend": self.case.backend, "model": self.case.model, "saved_at": time.time(),
                "files": files, **state}
        (partial / META).write_text(json.dumps(meta, allow_nan=True), encoding="utf-8")
        _fsync_tree(partial)
        if final.exists():  # the same step saved by an earlier attempt
            shutil.rmtree(final)
        os.replace(partial, final)
        self._prune()
        return final

    def _prune(self) -> None:
        steps = self._steps(self.root)
        for done in sorted(steps)[:-self.keep]:
            shutil.rmtree(steps[done], ignore_errors=True)
        for p in self.root.glob("step_*.partial"):
            shutil.rmtree(p, ignore_errors=True)

    def summary(self) -> dict[str, Any]:
        """For the record: where they are, how often, and which are kept."""
        steps = sorted(self._steps(self.root))
        return {"folder": str(self.root), "every_steps": self.every, "keep": self.keep, "kept_steps": steps}


#: The file :func:`save_arrays` writes in a checkpoint's folder, unless told another name.
STATE_FILE = "train_state.npz"


def save_arrays(folder: str, arrays: dict[str, Any], name: str = STATE_FILE) -> list[str]:
    """For a train step's ``save(folder)`` whose state is arrays (the model's, the optimizer's, a step count, an RNG
    state): write them, under their names, as one neutral ``.npz`` ``name`` in ``folder``; returns ``[name]``, what
    ``save`` returns. Scalars are kept as 0-d arrays."""
    if not name.endswith(".npz"):
        raise HarnessError(f"save_arrays: '{name}': the state file's name ends in .npz")
    write_npz(os.path.join(folder, name), arrays)
    return [name]


def load_arrays(folder: str, shapes: dict[str, tuple[int, ...]], name: str = STATE_FILE,
                what: str = "this case") -> dict[str, np.ndarray]:
    """For the same step's ``load(folder)``: the arrays :func:`save_arrays` wrote, refused in one line naming the
    file when it is missing, is not such a file, lacks an array of ``shapes`` (names to the shapes this step has),
    holds one of another shape (a case of another model or class count) or one with no place here. ``what`` names
    the step's case in the message."""
    path = os.path.join(folder, name)
    arrays = read_npz(path)
    check_weights(arrays, shapes, f"checkpoint '{path}' for {what}")
    return arrays
