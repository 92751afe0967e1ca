"""Dataset manifests: one scan of an ImageNet-layout split, kept and reused by every case and every rank.

A manifest lists a split's class folders and, per class, its image files with their sizes and, as far as they
were verified, why a file is not a readable image. It is stored next to the data (``<root>/.harness/``) or, where
the data cannot be written (read-only storage), in the cache folder (``HARNESS_CACHE``, else
``$XDG_CACHE_HOME/harness``, else ``~/.cache/harness``) under a name made from the folder's absolute path.

Its key is the list of class folders with each one's modification time (a folder's mtime changes when a file in
it is added, removed or renamed): a changed class folder is rescanned alone, every other class is reused, so a
start on an unchanged ImageNet lists 1,000 folder times instead of checking 1.28 million headers. (A file added
within the file system's timestamp tick of a scan, up to 1-2 s on FAT, ext3 or some network file systems, can
leave its folder's time unchanged: ``harness data scan --verify`` at a higher level, or removing the manifest,
makes the next start look again.)

Processes that need the same manifest together (the cases of a suite, the ranks of a case) take an exclusive
lock (``fcntl.flock``) around "read, rescan what changed, write": the first one scans, the others wait for it and
then find the manifest fresh. The manifest counts its scans (``scans``), which is how the tests count them.

Verification (the ``verify`` setting), per class, upgraded when a case asks for more than was done:

* ``none``: list the files and their sizes (trust the data);
* ``header``: also Pillow's header check and the end marker of each JPEG and PNG
  (``harness.data.folders.header_error``);
* ``full``: also decode every image once, in parallel processes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import VERIFY_LEVELS, Settings
from harness.errors import HarnessError, one_line

__all__ = ["VERIFY_LEVELS", "Manifest", "load_manifest", "manifest_path", "cache_root", "read_manifest"]

SCHEMA = "harness.data.manifest/1"
_DIR = ".harness"


def cache_root() -> Path:
    """Where manifests of read-only data go."""
    if os.environ.get("HARNESS_CACHE"):
        return Path(os.environ["HARNESS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "harness"


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        return True
    except OSError:
        return False


def manifest_path(root: str, split: str) -> Path:
    """The manifest file of ``root/<split>``: next to the data when it can be written there, else in the cache."""
    root_abs = os.path.abspath(root)
    beside = Path(root_abs) / _DIR
    if _writable(beside):
        return beside / f"manifest-{split}.json"
    digest = hashlib.sha256(root_abs.encode()).hexdigest()[:16]
    folder = cache_root() / "manifests" / f"{Path(root_abs).name}-{digest}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"data_root '{root}': cannot write its manifest beside the data nor in the cache "
                           f"'{folder}': {exc.strerror or exc} (set HARNESS_CACHE to a writable folder)") from None
    return folder / f"manifest-{split}.json"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    with open(str(path) + ".lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@dataclass
class Manifest:
    """One split of a dataset folder, as scanned: classes in label order, samples ``(path, class index)`` sorted
    by class then file name, per sample why it is not a readable image (or None), the files without an image
    extension, and what this call scanned."""

    root: str
    split: str
    classes: list[str]
    samples: list[tuple[str, int]]
    errors: list[str | None]
    ignored: list[str]
    verify: str
    path: Path
    scans: int
    scanned_classes: int = 0
    seconds: float = 0.0


def read_manifest(path: Path) -> dict[str, Any] | None:
    """A stored manifest, or None when there is none or it cannot be used (another schema, torn, edited)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("classes"), dict):
        return None
    return doc


def _mtime(path: str) -> int:
    return os.stat(path).st_mtime_ns


def _decode_error(path: str) -> str | None:
    """Why ``path`` cannot be decoded in full (``verify: full``), or None; run in worker processes."""
    from PIL import Image

    from harness.data.images import to_rgb

    try:
        with Image.open(path) as im:
            to_rgb(im).load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return one_line(exc)
    return None


def _scan_class(root: str, split_dir: str, name: str, verify: str, pools: dict[str, Any]) -> dict[str, Any]:
    """One class folder's entry: its files (sorted), sizes, ignored names and, to the ``verify`` level, why each
    bad file is not a readable image."""
    from harness.data.folders import header_error, list_class

    class_dir = os.path.join(split_dir, name)
    mtime = _mtime(class_dir)  # before listing: a file added during the scan makes the next start look again
    files, ignored = list_class(root, class_dir)
    sizes = []
    for f in files:
        try:
            sizes.append(os.stat(os.path.join(class_dir, f)).st_size)
        except OSError:
            sizes.append(-1)  # a symlink loop, no permission: the header check names it
    bad: dict[str, str] = {}
    paths = [os.path.join(class_dir, f) for f in files]
    level = VERIFY_LEVELS.index(verify)
    if level >= VERIFY_LEVELS.index("header"):
        checked = pools["threads"].map(header_error, paths, chunksize=64)
        bad = {f: e for f, e in zip(files, checked) if e is not None}
    if level >= VERIFY_LEVELS.index("full"):
        todo = [p for f, p in zip(files, paths) if f not in bad]
        for p, e in zip(todo, pools["processes"]().map(_decode_error, todo, chunksize=32)):
            if e is not None:
                bad[os.path.basename(p)] = e
    return {"mtime_ns": mtime, "files": files, "sizes": sizes, "ignored": ignored, "bad": bad, "verify": verify}


def load_manifest(root: str, split: str, verify: str = Settings.verify,
                  progress: Callable[[int, int, str], None] | None = None) -> Manifest:
    """The manifest of ``root/<split>``, built or brought up to date under the lock (see the module's text).
    Raises :class:`HarnessError` naming the folder at fault: a missing split, no class folders, a class folder
    without images, a path that cannot be read."""
    from harness.data.folders import split_classes

    if verify not in VERIFY_LEVELS:
        raise HarnessError(f"verify: {verify!r} is not one of {', '.join(VERIFY_LEVELS)}")
    split_classes(root, split)  # the folder's problems, named, before any manifest is written
    split_dir = os.path.join(root, split)
    path = manifest_path(root, split)
    t0 = time.perf_counter()
    with _locked(path):
        doc = read_manifest(path) or {"schema": SCHEMA, "classes": {}, "scans": 0}
        names = split_classes(root, split)
        stored: dict[str, Any] = doc["classes"]
        level = VERIFY_LEVELS.index(verify)
        stale = []
        for name in names:
            entry = stored.get(name)
            try:
                fresh = (isinstance(entry, dict) and isinstance(entry.get("files"), list)
                         and entry.get("mtime_ns") == _mtime(os.path.join(split_dir, name))
                         and VERIFY_LEVELS.index(entry.get("verify", "none")) >= level)
            except (OSError, ValueError):
                fresh = False
            if not fresh:
                stale.append(name)
        if stale or set(stored) - set(names):
            pools: dict[str, Any] = {"threads": ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 4))}
            procs: list[ProcessPoolExecutor] = []

            def processes() -> ProcessPoolExecutor:
                if not procs:
                    import multiprocessing

                    procs.append(ProcessPoolExecutor(os.cpu_count() or 1, multiprocessing.get_context("spawn")))
                return procs[0]

            pools["processes"] = processes
            try:
                for k, name in enumerate(stale, 1):
                    stored[name] = _scan_class(root, split_dir, name, verify, pools)
                    if progress is not None:
                        progress(k, len(stale), name)
            finally:
                pools["threads"].shutdown()
                for p in procs:
                    p.shutdown()
            for name in set(stored) - set(names):
                del stored[name]
            doc.update(root=os.path.abspath(root), split=split, scans=int(doc.get("scans", 0)) + 1,
                       scanned_at=time.time())
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            try:
                tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
                os.replace(tmp, path)
            except OSError as exc:  # the scan still holds for this process
                print(f"harness: warning: cannot write the manifest '{path}': {exc.strerror or exc}",
                      file=sys.stderr)
    samples: list[tuple[str, int]] = []
    errors: list[str | None] = []
    ignored: list[str] = []
    for index, name in enumerate(names):
        entry = stored[name]
        class_dir = os.path.join(split_dir, name)
        bad = entry.get("bad") or {}
        samples.extend((os.path.join(class_dir, f), index) for f in entry["files"])
        errors.extend(bad.get(f) for f in entry["files"])
        ignored.extend(os.path.join(class_dir, f) for f in entry.get("ignored") or [])
    return Manifest(root=root, split=split, classes=names, samples=samples, errors=errors, ignored=ignored,
                    verify=verify, path=path, scans=int(doc.get("scans", 0)), scanned_classes=len(stale),
                    seconds=time.perf_counter() - t0)
