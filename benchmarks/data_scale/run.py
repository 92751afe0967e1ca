"""ImageNet-scale data on this machine: the dataset manifest's first scan, a cached start, 8 processes starting
together, and the core loader's images/s against a bare Pillow loop at the same worker count.

It builds an ImageNet-layout folder of ``--files`` small JPEGs (1,000 classes; a handful of distinct encoded
images written many times, so building it is quick and every file has a real JPEG header and end marker), then:

1. **first scan**: ``load_manifest`` in a fresh process on a folder with no manifest (lists every class folder,
   checks every header and JPEG end marker);
2. **cached start**: the same again, the manifest now fresh (goal: <= 5 s on 200,000 files);
3. **8 processes together**: the manifest removed, 8 processes started at once (as the ranks of an 8-device case
   or the cases of a suite): one scans, the others wait and read; the manifest's ``scans`` counter must grow by 1;
4. **one class folder changed**: a file added to one class; the next start rescans that folder alone;
5. **loader vs bare Pillow**: the core's host loader (:class:`harness.data.host_batches.HostStream`, train resize
   without augmentation, ``--workers`` processes) against a bare ``multiprocessing.Pool`` over the same files doing
   the same ``Preprocess.load`` per image (goal: >= 0.9 of its images/s).

Prints times and ratios. Not a test: its figures belong in a note, with the machine and its load.

    python benchmarks/data_scale/run.py --files 200000 --folder /tmp/imagenet-like
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

_LOAD = """
import json, sys, time
t0 = time.perf_counter()
from harness.data.manifest import load_manifest
m = load_manifest(sys.argv[1], "train", "header")
print(json.dumps({"seconds": time.perf_counter() - t0, "files": len(m.samples), "scans": m.scans,
                  "scanned_classes": m.scanned_classes}))
"""


def build(folder: Path, files: int, classes: int = 1000, size: int = 48) -> float:
    import numpy as np
    from PIL import Image

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(8):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG", quality=85)
        blobs.append(buf.getvalue())
    per = files // classes
    for c in range(classes):
        d = folder / "train" / f"n{c:08d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per):
            (d / f"n{c:08d}_{i}.JPEG").write_bytes(blobs[(c + i) % len(blobs)])
    return time.perf_counter() - t0


def load_in_fresh_process(folder: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _LOAD, str(folder)], capture_output=True, check=False, text=True,
                         cwd=REPO)
    if out.returncode:
        sys.exit(f"data_scale: load_manifest failed: {out.stderr.strip()[-400:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1])}


def together(folder: Path, n: int) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", _LOAD, str(folder)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO) for _ in range(n)]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return time.perf_counter() - t0, outs


def _bare(args: tuple):
    """One batch the plain way: ``Preprocess.load`` per file, stacked (the pixels go back to the parent, as a
    loader's must)."""
    import numpy as np

    pre, paths = args
    return np.stack([pre.load(p, None) for p in paths])


def loader_vs_bare(folder: Path, workers: int, images: int, batch: int = 64) -> tuple[float, float]:
    """images/s of the core's host loader and of a bare ``multiprocessing.Pool`` doing the same per-image work
    at the same worker count; each timed after its first batch (process start-up and imports left out)."""
    from harness.config import Settings
    from harness.data.host_batches import HostStream
    from harness.data.images import preprocess_for
    from harness.data.splits import scan_split

    s = Settings(data="folder", data_root=str(folder), batch_size=batch, workers=workers, image_size=32,
                 num_classes=1000, eval=False, verify="none", augment=False)
    _, samples, _ = scan_split(s, "train")
    n_batches = images // batch
    stream = HostStream(s, "train")
    it = iter(stream)
    next(it)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    loader = n_batches * batch / (time.perf_counter() - t0)
    stream.close()
    pre = preprocess_for(s, train=True)
    paths = [p for p, _ in samples[: (n_batches + 1) * batch]]
    chunks = [(pre, paths[i:i + batch]) for i in range(0, len(paths), batch)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.imap(_bare, chunks)
        next(results)
        t0 = time.perf_counter()
        done = sum(len(b) for b in results)
        bare = done / (time.perf_counter() - t0)
    return loader, bare


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=200_000)
    p.add_argument("--folder", type=Path, default=Path("/tmp/harness-data-scale"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--images", type=int, default=25_600, help="images the loader comparison times")
    p.add_argument("--keep", action="store_true", help="keep the folder (default: remove it at the end)")
    args = p.parse_args()
    folder = args.folder
    if folder.exists():
        shutil.rmtree(folder)
    print(f"building {args.files:,} JPEGs in {folder} ...", flush=True)
    print(f"built in {build(folder, args.files):.1f} s", flush=True)
    try:
        first = load_in_fresh_process(folder)
        print(f"first scan: {first['seconds']:.1f} s for {first['files']:,} files "
              f"({first['files'] / first['seconds']:,.0f} files/s)", flush=True)
        cached = load_in_fresh_process(folder)
        print(f"cached start: {cached['seconds']:.2f} s (goal <= 5 s); scanned classes: {cached['scanned_classes']}; "
              f"scans so far: {cached['scans']}", flush=True)
        from harness.data.manifest import manifest_path

        manifest_path(str(folder), "train").unlink()
        wall, outs = together(folder, 8)
        scans = max(o["scans"] for o in outs)
        print(f"8 processes together, no manifest: {wall:.1f} s wall; scans: {scans} (a fresh count: 1 expected); "
              f"slowest process {max(o['seconds'] for o in outs):.1f} s, classes scanned per process: "
              f"{sorted(o['scanned_classes'] for o in outs)}", flush=True)
        one = folder / "train" / "n00000007"
        shutil.copy(next(one.iterdir()), one / "added.JPEG")
        changed = load_in_fresh_process(folder)
        print(f"one class folder changed: {changed['seconds']:.2f} s, {changed['scanned_classes']} class folder "
              f"rescanned", flush=True)
        loader, bare = loader_vs_bare(folder, args.workers, args.images)
        print(f"core loader {loader:,.0f} images/s vs bare Pillow loop {bare:,.0f} images/s at {args.workers} "
              f"worker(s): ratio {loader / bare:.2f} (goal >= 0.9)", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
