"""ImageNet-layout folders: listing a split's class folders and image files, and the cheap header check of a file.

:func:`scan_folder` lists an ImageNet-layout folder (``root/<split>/<class>/<images>``);
:class:`harness.data.images.Preprocess` turns one image into a normalised ``float32`` CHW array.
Backends wrap these in their own loaders (a PyTorch ``Dataset`` in DataLoader
workers, a MindSpore ``GeneratorDataset``), or take the core's host batches
(:mod:`harness.data.host_batches`), so every framework sees the same pixels in the same order.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from PIL import Image

from harness.errors import HarnessError, near, one_line

if TYPE_CHECKING:
    pass

#: File extensions read as images (matched case-insensitively).
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
def _listdir(root: str, path: str) -> list[os.DirEntry[str]]:
    """Non-hidden entries of ``path``; an OSError becomes a one-line HarnessError."""
    try:
        with os.scandir(path) as it:
            return [e for e in it if not e.name.startswith(".")]
    except OSError as exc:
        raise HarnessError(f"data_root '{root}': cannot read '{path}': {exc.strerror or exc}") from None


def _is_dir(entry: os.DirEntry[str], root: str) -> bool:
    try:
        return entry.is_dir()
    except OSError as exc:  # a symlink loop, a broken mount
        raise HarnessError(f"data_root '{root}': cannot read '{entry.path}': {exc.strerror or exc}") from None


def _maybe_file(entry: os.DirEntry[str]) -> bool:
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
            end, fp = _ENDS.get(im.format or ""), im.fp
            if end is not None and fp is not None:
                size = fp.seek(0, os.SEEK_END)
                fp.seek(max(0, size - _TAIL))
                if end not in fp.read(_TAIL):
                    return f"truncated {im.format} (its data stops before the end marker)"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return one_line(exc)
    return None


