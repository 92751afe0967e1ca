"""A split as a case reads it: its files from the manifest (unreadable ones counted and skipped), decoding with
the next image standing in for a corrupt one, and the eval split padded to whole batches."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from harness.data.images import MEAN, STD, Preprocess, preprocess_for
from harness.data.manifest import load_manifest
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.config import Settings


class _Summary(TypedDict):
    files: int
    skipped: int
    ignored: int
    examples: list[str]


_SUMMARY: dict[str, _Summary] = {}
_SCANS: dict[tuple[str, str], tuple[list[str], list[tuple[str, int]], list[str | None], list[str]]] = {}

def scan_split(settings: Settings, split: str) -> tuple[list[str], list[tuple[str, int]], list[int]]:
    """The split's files and which are not readable images, from the dataset's manifest
    (:func:`harness.data.manifest.load_manifest`: built once, kept beside the data or in the cache, verified to the
    ``verify`` setting, rescanned only where a class folder changed).

    Returns ``(classes, samples, bad)``: ``bad`` are the positions in ``samples`` of files that are not
    readable images; they are skipped with a warning on stderr and counted in :func:`scan_summary` (files without
    an image extension are counted as ignored). Past ``max_bad_images`` (a fraction of the split, or a count when
    >= 1) it raises :class:`HarnessError` naming the first bad file. Backends leave the ``bad`` positions out of
    their samplers, so the remaining images keep their indices (MindSpore's folder reader lists the same files in
    the same order).
    """
    root = settings.data_root
    if root is None:
        raise HarnessError("data_root: required when data is 'folder'")
    key = (os.path.abspath(root), split)
    fresh = key not in _SCANS  # a process reads a split once (an inference case reads val twice)
    if fresh:  # the dataset's manifest: scanned once, by whichever case or rank needs it first (harness.data.manifest)
        m = load_manifest(root, split, settings.verify)
        _SCANS[key] = (m.classes, m.samples, m.errors, m.ignored)
    classes, samples, errors, ignored = _SCANS[key]
    bad = [i for i, e in enumerate(errors) if e is not None]
    limit = settings.max_bad_images if settings.max_bad_images >= 1 else settings.max_bad_images * len(samples)
    if bad:
        first = samples[bad[0]][0]
        what = f"{len(bad)} of {len(samples)} image files in '{os.path.join(root, split)}' are not readable images"
        if len(bad) > limit or len(bad) == len(samples):
            raise HarnessError(f"data_root '{root}': {what} (more than max_bad_images: {settings.max_bad_images}); "
                               f"first: {first}: {errors[bad[0]]}")
        if fresh:
            print(f"harness: warning: {what}, skipped (first: {first}: {errors[bad[0]]})", file=sys.stderr,
                  flush=True)
    if ignored and fresh:
        print(f"harness: warning: {len(ignored)} files without an image extension ignored in "
              f"'{os.path.join(root, split)}' (first: {ignored[0]})", file=sys.stderr, flush=True)
    _SUMMARY[split] = {"files": len(samples) - len(bad), "skipped": len(bad), "ignored": len(ignored),
                       "examples": [f"{samples[i][0]}: {errors[i]}" for i in bad[:5]]}
    return classes, samples, bad


#: Per split, files whose header was fine but whose data could not be decoded while loading (truncated data):
#: path -> reason, noted by :func:`note_unreadable` in the process that runs the case.
_DECODE_BAD: dict[str, dict[str, str]] = {}


def load_or_next(pre: Preprocess, samples: Sequence[tuple[str, int]], i: int,
                 rng: np.random.Generator | None, scored: bool = False) -> tuple[np.ndarray, int, str]:
    """Sample ``i`` decoded: ``(image, label, bad)``. A file that fails only now (its header was fine, its data is
    corrupt) is replaced by the next readable sample and named in ``bad`` (one ``path: reason`` per line; empty
    when none failed) for :func:`note_unreadable` to count. Training takes the replacement's label; an evaluation
    (``scored``) gives it :data:`PAD_LABEL`, so the bad file is left out of the score, not scored twice. Works in
    any loader worker process: nothing is shared."""
    bad: list[str] = []
    for k in range(min(len(samples), 32)):
        path, label = samples[(i + k) % len(samples)]
        try:
            return pre.load(path, rng), PAD_LABEL if scored and k else label, "\n".join(bad)
        except HarnessError as exc:
            bad.append(str(exc))
    raise HarnessError(f"{len(bad)} images in a row cannot be decoded (first: {bad[0]})")


def unreadable_files(split: str) -> set[str]:
    """The files of ``split`` this process found undecodable while loading (:func:`note_unreadable`)."""
    return set(_DECODE_BAD.get(split, ()))


def note_unreadable(settings: Settings, split: str, reports: Iterable[str]) -> None:
    """Count the files a loader found undecodable (the ``bad`` of :func:`load_or_next`): each is named once on
    stderr and in the record's ``metrics.data``; past ``max_bad_images`` (with those the scan found) the case fails
    in one line naming the first."""
    seen = _DECODE_BAD.setdefault(split, {})
    for report in reports:
        for line in filter(None, report.splitlines()):
            path, _, why = line.partition(": cannot decode image: ")
            if path not in seen:
                seen[path] = why or line
                print(f"harness: warning: {path}: cannot be decoded ({why or line}); replaced by the next image",
                      file=sys.stderr, flush=True)
                summary = _SUMMARY.setdefault(split, {"files": 0, "skipped": 0, "ignored": 0, "examples": []})
                summary["skipped"] += 1
                summary["files"] = max(0, summary["files"] - 1)
                if len(summary["examples"]) < 5:
                    summary["examples"].append(f"{path}: {why or line} (while loading)")
    counts = _SUMMARY.get(split)
    if not seen or counts is None:
        return
    total = counts["files"] + counts["skipped"]
    limit = settings.max_bad_images if settings.max_bad_images >= 1 else settings.max_bad_images * total
    if counts["skipped"] > limit:
        first = next(iter(seen.items()))
        raise HarnessError(f"data_root '{settings.data_root}': {counts['skipped']} of {total} image files in "
                           f"'{os.path.join(settings.data_root or '', split)}' cannot be decoded (more than "
                           f"max_bad_images: {settings.max_bad_images}); first found while loading: {first[0]}: "
                           f"{first[1]}")


def scan_summary() -> dict[str, dict[str, object]]:
    """Per split read by this process, what :func:`scan_split` left out: ``{"files", "skipped", "ignored",
    "examples"}`` (the case's record keeps it as ``metrics.data``); empty when nothing was skipped or ignored."""
    return {k: dict(v) for k, v in _SUMMARY.items() if v["skipped"] or v["ignored"]}



#: The label of the images that pad the last eval batch to ``batch_size``: eval steps count only labels >= 0.
PAD_LABEL = -1


def eval_samples(settings: Settings) -> list[tuple[str, int]]:
    """The readable images of the eval split, in order, padded with copies of the last one labelled
    :data:`PAD_LABEL` to a whole number of batches, so a static-shape graph never sees a short batch."""
    _, samples, bad = scan_split(settings, "val")
    skip = set(bad)
    samples = [x for i, x in enumerate(samples) if i not in skip]
    short = -len(samples) % settings.batch_size
    return samples + [(samples[-1][0], PAD_LABEL)] * short


def eval_arrays(settings: Settings, batch: int, mean: Sequence[float] = MEAN,
                std: Sequence[float] = STD) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The eval split of ``settings.data_root`` as host batches ``(float32 NCHW images, int64 labels)``, in order,
    preprocessed exactly as the backends' eval streams (unpadded: the last batch may be short). For runtimes that
    take host arrays, such as exported models."""
    samples = [x for x in eval_samples(settings) if x[1] != PAD_LABEL]
    pre = preprocess_for(settings, False, mean, std)
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        images = np.stack([pre.load(path, None) for path, _ in chunk]).astype(np.float32, copy=False)
        yield images, np.array([label for _, label in chunk], dtype=np.int64)
