"""Framework-neutral datasets: folder scans, the train order, synthetic and padded eval data.

:func:`scan_folder` lists an ImageNet-layout folder (``root/<split>/<class>/<images>``);
:class:`harness.images.Preprocess` turns one image into a normalised ``float32`` CHW array.
Backends wrap these in their own loaders (a PyTorch ``Dataset`` in DataLoader
workers, a MindSpore ``GeneratorDataset``), or take the core's host batches
(:mod:`harness.hostdata`), so every framework sees the same pixels in the same order.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .errors import HarnessError, near
from .images import MEAN, STD, Preprocess, preprocess_for

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["IMAGE_EXTENSIONS", "MEAN", "STD", "PAD_LABEL", "scan_folder", "scan_split", "scan_summary",
           "Preprocess", "preprocess_for", "class_folders", "load_or_next", "note_unreadable", "unreadable_files",
           "repeated_order", "epoch_order", "augment_rng", "repeat_synthetic",
           "header_error", "split_classes", "split_missing", "list_class", "shard_order", "synthetic_batches", "synthetic_arrays", "SyntheticStream", "eval_samples", "eval_arrays"]

#: File extensions read as images (matched case-insensitively).
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
def _listdir(root: str, path: str) -> list[os.DirEntry]:
    """Non-hidden entries of ``path``; an OSError becomes a one-line HarnessError."""
    try:
        with os.scandir(path) as it:
            return [e for e in it if not e.name.startswith(".")]
    except OSError as exc:
        raise HarnessError(f"data_root '{root}': cannot read '{path}': {exc.strerror or exc}") from None


def _is_dir(entry: os.DirEntry, root: str) -> bool:
    try:
        return entry.is_dir()
    except OSError as exc:  # a symlink loop, a broken mount
        raise HarnessError(f"data_root '{root}': cannot read '{entry.path}': {exc.strerror or exc}") from None


def _maybe_file(entry: os.DirEntry) -> bool:
    """A file, or an entry that cannot be looked at (a symlink loop, no permission): it is kept so that the
    header check names it and counts it against ``max_bad_images``."""
    try:
        return entry.is_file()
    except OSError:
        return True


def class_folders(root: str, split: str) -> list[str]:
    """The sorted class folder names of ``root/<split>`` (a label is a position in this list)."""
    path = os.path.join(root, split)
    return sorted(e.name for e in _listdir(root, path) if _is_dir(e, root))


def scan_folder(root: str, split: str, ignored: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """List ``root/<split>/<class>/<image>`` files.

    Returns the sorted class names and ``(path, class_index)`` pairs sorted by
    class, then file name. Hidden entries and files without an image extension
    are ignored (the latter appended to ``ignored`` when given). Raises
    :class:`HarnessError` naming the folder at fault when ``root`` or
    ``root/<split>`` is missing, there are no class folders, or a class folder
    holds no images.
    """
    classes = split_classes(root, split)
    split_dir = os.path.join(root, split)
    samples: list[tuple[str, int]] = []
    for index, name in enumerate(classes):
        class_dir = os.path.join(split_dir, name)
        files, skipped = list_class(root, class_dir)
        if ignored is not None:
            ignored.extend(os.path.join(class_dir, f) for f in skipped)
        samples.extend((os.path.join(class_dir, f), index) for f in files)
    return classes, samples


def split_classes(root: str, split: str) -> list[str]:
    """The class folders of ``root/<split>``, in label order; a missing root or split, or a split without class
    folders, is refused naming the folder."""
    if not os.path.exists(root):
        raise HarnessError(f"data_root '{root}': no such folder")
    if not os.path.isdir(root):
        raise HarnessError(f"data_root '{root}': not a folder")
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        raise split_missing(root, split)
    classes = class_folders(root, split)
    if not classes:
        raise HarnessError(f"data_root '{root}': '{split_dir}' has no class sub-folders "
                           f"(expected {split}/<class>/<images>)")
    return classes


def split_missing(root: str, split: str) -> HarnessError:
    """The error for a data root without the folder of ``split``, with what it has instead."""
    split_dir = os.path.join(root, split)
    subdirs = sorted(e.name for e in _listdir(root, root) if e.is_dir())
    found = f"found: {', '.join(subdirs)}" if subdirs else "it has no sub-folders"
    what = "is not a folder" if os.path.exists(split_dir) else "is missing"
    return HarnessError(f"data_root '{root}': split folder '{split_dir}' {what} ({found}){near(split, subdirs)}")


def list_class(root: str, class_dir: str) -> tuple[list[str], list[str]]:
    """A class folder's image file names and the names of its other files, each sorted (hidden ones left out);
    a folder without images is refused naming it."""
    entries = [e for e in _listdir(root, class_dir) if _maybe_file(e)]
    files = sorted(e.name for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise HarnessError(f"data_root '{root}': class folder '{class_dir}' has no images "
                           f"({', '.join(IMAGE_EXTENSIONS)})")
    return files, sorted(e.name for e in entries if not e.name.lower().endswith(IMAGE_EXTENSIONS))


_SUMMARY: dict[str, dict[str, object]] = {}
_SCANS: dict[tuple[str, str], tuple[list[str], list[tuple[str, int]], list[str | None], list[str]]] = {}


#: The end a whole file of each format has (within its last :data:`_TAIL` bytes): JPEG's EOI marker (which entropy-
#: coded data cannot hold: a 0xFF there is stuffed), PNG's IEND chunk.
_ENDS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}
_TAIL = 4096


def header_error(path: str) -> str | None:
    """Why ``path`` is not a readable image, or None: Pillow identifies the format and size from the header without
    decoding the pixels, and a JPEG or PNG must also end as a whole file does (a download cut short passes the
    header but fails to decode, in every framework's decoder)."""
    try:
        with Image.open(path) as im:
            if im.width < 1 or im.height < 1:
                return "empty image"
            end = _ENDS.get(im.format or "")
            if end is not None:
                fp = im.fp
                size = fp.seek(0, os.SEEK_END)
                fp.seek(max(0, size - _TAIL))
                if end not in fp.read(_TAIL):
                    return f"truncated {im.format} (its data stops before the end marker)"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def scan_split(settings: Settings, split: str) -> tuple[list[str], list[tuple[str, int]], list[int]]:
    """The split's files and which are not readable images, from the dataset's manifest
    (:func:`harness.manifest.load_manifest`: built once, kept beside the data or in the cache, verified to the
    ``verify`` setting, rescanned only where a class folder changed).

    Returns ``(classes, samples, bad)``: ``bad`` are the positions in ``samples`` of files that are not
    readable images; they are skipped with a warning on stderr and counted in :data:`SKIPPED` (files without an
    image extension are counted as ignored). Past ``max_bad_images`` (a fraction of the split, or a count when
    >= 1) it raises :class:`HarnessError` naming the first bad file. Backends leave the ``bad`` positions out of
    their samplers, so the remaining images keep their indices (MindSpore's folder reader lists the same files in
    the same order).
    """
    from .manifest import load_manifest

    root = settings.data_root
    key = (os.path.abspath(root), split)
    fresh = key not in _SCANS  # a process reads a split once (an inference case reads val twice)
    if fresh:  # the dataset's manifest: scanned once, by whichever case or rank needs it first (harness.manifest)
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
    bad = []
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
                summary["skipped"] = int(summary["skipped"]) + 1
                summary["files"] = max(0, int(summary["files"]) - 1)
                examples = summary["examples"]
                if isinstance(examples, list) and len(examples) < 5:
                    examples.append(f"{path}: {why or line} (while loading)")
    summary = _SUMMARY.get(split)
    if not seen or summary is None:
        return
    total = int(summary["files"]) + int(summary["skipped"])
    limit = settings.max_bad_images if settings.max_bad_images >= 1 else settings.max_bad_images * total
    if int(summary["skipped"]) > limit:
        first = next(iter(seen.items()))
        raise HarnessError(f"data_root '{settings.data_root}': {summary['skipped']} of {total} image files in "
                           f"'{os.path.join(settings.data_root or '', split)}' cannot be decoded (more than "
                           f"max_bad_images: {settings.max_bad_images}); first found while loading: {first[0]}: "
                           f"{first[1]}")


def scan_summary() -> dict[str, dict[str, object]]:
    """Per split read by this process, what :func:`scan_split` left out: ``{"files", "skipped", "ignored",
    "examples"}`` (the case's record keeps it as ``metrics.data``); empty when nothing was skipped or ignored."""
    return {k: dict(v) for k, v in _SUMMARY.items() if v["skipped"] or v["ignored"]}


def repeated_order(n: int, repeats: int, rng: np.random.Generator) -> np.ndarray:
    """One epoch of a repeated-augmentation sampler: a shuffled order of ``n`` indices, each yielded
    ``repeats`` times in a row, cut to ``n`` draws (so an epoch costs what a plain epoch costs)."""
    return np.repeat(rng.permutation(n), repeats)[:n]


def epoch_order(n: int, repeats: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """Rank ``rank``'s train order for ``epoch``: a shuffle drawn from ``(seed, epoch)`` alone (each index
    ``repeats`` times in a row for repeated augmentation), sharded. Being a function of the epoch, not of a
    generator's history, it lets a resumed run pick up the very order it stopped in; every framework's train
    sampler uses it, so they see the same images in the same order."""
    order = repeated_order(n, repeats, np.random.default_rng([seed, epoch]))
    return shard_order(order, repeats, rank, world)


def augment_rng(seed: int, epoch: int, rank: int, position: int) -> np.random.Generator:
    """The generator of one train sample's augmentation: a function of where it falls in the run (not of which
    loader worker decodes it), so runs, resumed ones included, augment alike whatever the worker count."""
    return np.random.default_rng([seed, epoch, rank, position])


def shard_order(order: np.ndarray, repeats: int, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s share of an epoch order: whole groups of ``repeats`` copies, dealt round-robin, every rank
    the same count (the remainder is dropped, as a distributed sampler with drop_last does)."""
    if world == 1:
        return order
    groups = order[: len(order) // repeats * repeats].reshape(-1, repeats)
    per_rank = len(groups) // world
    return groups[rank::world][:per_rank].reshape(-1)


def repeat_synthetic(n: int, repeats: int) -> np.ndarray:
    """Positions of a synthetic batch of ``n`` built from ``n // repeats`` distinct samples, each repeated."""
    return np.repeat(np.arange(n // repeats), repeats)


#: Images per epoch of ImageNet-1k, the epoch length of synthetic data trained by epochs.
IMAGENET_TRAIN_IMAGES = 1_281_167
SYNTHETIC_EVAL_BATCHES = 10


def synthetic_batches(settings: Settings, split: str) -> int:
    """Batches per epoch of synthetic data, the same for every backend.

    Training by ``steps``: the whole run is one epoch (``warmup + steps``), so a
    schedule spans the run. Training by ``epochs``: an ImageNet-sized epoch.
    Evaluation: ``eval_batches``, or 10.
    """
    if split == "train":
        if settings.epochs is not None:
            return max(1, IMAGENET_TRAIN_IMAGES // settings.batch_size)
        return settings.warmup + settings.steps
    return settings.eval_batches or SYNTHETIC_EVAL_BATCHES


def synthetic_arrays(settings: Settings, split: str, repeats: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic batch of ``split``: ``(float32 NCHW images, int64 labels)`` drawn from ``(seed, split)``
    alone, so every framework trains and evaluates on the same bytes. With ``repeats`` > 1 the batch holds whole
    instances, as the repeated-augmentation sampler gives."""
    s = settings
    rng = np.random.default_rng([s.seed, 0 if split == "train" else 1])
    images = rng.standard_normal((s.batch_size, 3, s.image_size, s.image_size), dtype=np.float32)
    labels = rng.integers(0, s.num_classes, s.batch_size, dtype=np.int64)
    if repeats > 1:
        pick = repeat_synthetic(s.batch_size, repeats)
        images, labels = images[pick], labels[pick]
    return np.ascontiguousarray(images), labels


class SyntheticStream:
    """One batch, made once on the device, yielded ``n`` times per epoch (no host work per step)."""

    def __init__(self, batch: tuple[object, ...], n: int) -> None:
        self.batch, self.n = batch, n
        self.start = 0

    def __len__(self) -> int:
        return self.n

    def start_at(self, epoch: int, batch: int) -> None:
        """Resume: the next epoch begins at ``batch`` (every epoch is the same batch)."""
        self.start = batch

    def __iter__(self):  # noqa: ANN204 - yields the backend's batch type
        start, self.start = self.start, 0
        for _ in range(start, self.n):
            yield self.batch


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
