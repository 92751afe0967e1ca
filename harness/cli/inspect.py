"""The ``harness`` commands that inspect rather than run: list, plugins, check-backend, references, tiny, convert,
parity (see :mod:`harness.cli.main`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def _write_output(path: str, text: str) -> None:
    """Write an -o file (its folder made if missing); a failure is one line naming the path."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise HarnessError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _probe_all() -> dict[str, dict[str, Any]]:
    from harness.backends.loading import backend_entry_points
    from harness.backends.probe import probe_backend

    return {name: probe_backend(name) for name in sorted(backend_entry_points())}


def _cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from harness.models.recipes import RECIPES, published_recipe
    from harness.models.specs import MODELS

    probes = _probe_all()
    rows: list[list[Any]] = []
    for name, spec in MODELS.items():
        usable = [b for b, p in probes.items() if name in p.get("models", ())]
        recipes = sorted({published_recipe(name, b) or "" for b in [*probes, "*"]} - {""})
        rows.append([name, f"{spec.params:,}" if spec.params else "", ", ".join(usable) or "none", ", ".join(recipes)])
    print("## Models\n")
    print(tabulate(rows, headers=["model", "params (224 px, 1000 classes)", "backends", "published recipes"],
                   tablefmt="github"))
    if args.recipes:
        print("\n## Recipes (`recipe: NAME` in a suite; `recipe: published` picks the model's own)\n")
        rows = []
        for r in RECIPES.values():
            per = "; ".join(f"{n} dev: batch {v['batch_size']}/dev, lr {v['lr']:g}"
                            for n, v in sorted({n: r.values(n) for n in (1, 8)}.items()))
            derived = f" (derived: {', '.join(map(str, r.derived))} dev)" if r.derived else ""
            s = r.settings
            rows.append([r.name, r.model, s.get("optimizer"), f"{s.get('schedule')}, {s.get('epochs')} epochs",
                         per + derived, ", ".join(r.backends) or "any", r.source])
        print(tabulate(rows, headers=["recipe", "model", "optimizer", "schedule", "batch and lr", "backends",
                                      "source"], tablefmt="github"))
    print("\n## Scenarios (`scenario:`) and launchers (a backend's `launcher`)\n")
    from harness.run.launchers import LAUNCHERS
    from harness.run.scenarios import SCENARIOS

    rows = [["scenario", n, SCENARIOS.get(n).help, SCENARIOS.entry_points()[n]] for n in SCENARIOS.names()]
    rows += [["launcher", n, LAUNCHERS.get(n).help,
              LAUNCHERS.entry_points()[n]] for n in LAUNCHERS.names()]
    print(tabulate(rows, headers=["role", "name", "what", "from"], tablefmt="github"))
    print("\n## Backends and devices on this machine\n")
    rows = []
    for name, p in probes.items():
        if "error" in p:
            rows.append([name, "", "", "unusable", p["error"]])
            continue
        for dev, st in p["device_status"].items():
            rows.append([name, f"{p['framework']} {p['framework_version']}", dev,
                         f"yes ({st.get('model')})" if st["available"] else "no", st.get("reason") or ""])
    print(tabulate(rows, headers=["backend", "framework", "device", "usable", "why not"], tablefmt="github"))
    return 0


def _cmd_check_backend(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from harness.backends.conformance import check_backend
    from harness.backends.loading import backend_entry_points
    from harness.errors import near

    eps = backend_entry_points()
    if args.name not in eps:
        raise HarnessError(f"unknown backend '{args.name}'{near(args.name, eps)} (installed: {', '.join(sorted(eps))})")
    results = check_backend(args.name, args.device, args.model, args.export_from, args.model_file)
    print(tabulate([[r["check"], r["status"], r["detail"]] for r in results], headers=["check", "status", "detail"],
                   tablefmt="github"))
    failed = [r for r in results if r["status"] == "fail"]
    counts = {k: sum(r["status"] == k for r in results) for k in ("pass", "fail", "skip")}
    print(f"\nbackend '{args.name}' on {args.device}: {counts['pass']} passed, {counts['fail']} failed, "
          f"{counts['skip']} skipped")
    return 1 if failed else 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from harness.backends.hook_checks import scenarios_of
    from harness.backends.loading import describe_entry_point

    rows = []
    for name, p in _probe_all().items():
        d = describe_entry_point(name)
        devices = ", ".join(k for k, v in p.get("device_status", {}).items() if v["available"])
        runtimes = ", ".join(p.get("runtimes") or {})
        scenarios = ", ".join(scenarios_of(p)) if "error" not in p else ""
        rows.append([name, f"{p.get('version', '?')}", f"{d['package']} {d['package_version']}", d["module"],
                     p.get("error") or f"{p['framework']} {p['framework_version']}", devices,
                     scenarios + (f" (runtimes: {runtimes})" if runtimes else ""), ", ".join(p.get("models", []))])
    print(tabulate(rows, headers=["backend", "version", "package", "module", "framework", "devices found",
                                  "scenarios", "models"], tablefmt="github"))
    return 0


def _cmd_references(args: argparse.Namespace) -> int:
    import json

    from harness.results.references import reference_records

    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in reference_records())
    if args.output:
        _write_output(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_tiny(args: argparse.Namespace) -> int:
    from harness.data.tiny import make_tiny_dataset

    root = make_tiny_dataset(args.folder, classes=args.classes, train_per_class=args.train_per_class,
                             val_per_class=args.val_per_class, size=args.size, seed=args.seed)
    print(root)
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    """``harness data scan|info DIR``: build (or bring up to date) the dataset's manifests, or show them."""
    import os

    from harness.data.manifest import load_manifest, manifest_path, read_manifest

    splits = [sp for sp in ("train", "val") if os.path.isdir(os.path.join(args.folder, sp))]
    if not os.path.isdir(args.folder):
        raise HarnessError(f"{args.folder}: no such folder")
    if not splits:
        raise HarnessError(f"{args.folder}: no train/ or val/ folder (expected DIR/<split>/<class>/<images>)")
    for split in splits:
        if args.action == "info":
            path = manifest_path(args.folder, split)
            doc = read_manifest(path)
            if doc is None:
                print(f"{split}: no manifest yet ({path}); `harness data scan {args.folder}` builds it")
                continue
            classes = doc["classes"]
            files = sum(len(c.get("files", ())) for c in classes.values())
            bad = sum(len(c.get("bad") or {}) for c in classes.values())
            size = sum(sum(c.get("sizes") or ()) for c in classes.values())
            levels = sorted({c.get("verify", "none") for c in classes.values()})
            print(f"{split}: {len(classes)} classes, {files} files ({size / 2**20:,.1f} MiB), {bad} not readable, "
                  f"verified: {', '.join(levels)}; scans: {doc.get('scans', 0)}; {path}")
            continue

        def progress(k: int, n: int, name: str, split: str = split) -> None:
            if sys.stderr.isatty() or k == n or k % max(1, n // 20) == 0:
                end = "\n" if k == n else "\r" if sys.stderr.isatty() else "\n"
                print(f"{split}: scanned {k}/{n} changed class folders ({name})", end=end, file=sys.stderr,
                      flush=True)

        m = load_manifest(args.folder, split, args.verify, progress=progress)
        bad = sum(e is not None for e in m.errors)
        print(f"{split}: {len(m.classes)} classes, {len(m.samples)} files, {bad} not readable; "
              f"{m.scanned_classes} class folder(s) scanned in {m.seconds:.1f} s; {m.path}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from harness.backends.convert import convert

    out = convert(args.src, args.dst, model=args.model, src_backend=args.src_backend, dst_backend=args.dst_backend,
                  width=args.width, num_classes=args.num_classes, image_size=args.image_size)
    print(f"{out['src']} ({out['from']}) -> {out['written']} ({out['to']}): {out['tensors']} tensors, "
          f"checked against {out['model']}")
    return 0


def _cmd_parity(args: argparse.Namespace) -> int:
    from harness.backends.parity import UPDATE_REL_TOL, compare

    r = compare(args.model, args.backends[0], args.backends[1], width=args.width, image_size=args.image_size)
    ok = (r.logits_max_abs <= args.tol and r.loss_abs <= args.tol and r.running_stats_max_abs <= args.tol
          and r.update_rel_max <= UPDATE_REL_TOL)
    print(f"{args.model}: {args.backends[0]} vs {args.backends[1]}: logits max |diff| {r.logits_max_abs:.2e}, "
          f"loss |diff| {r.loss_abs:.2e}, BN running stats max |diff| {r.running_stats_max_abs:.2e}, "
          f"weights after one step max |diff| {r.weights_max_abs:.2e} ({r.worst_weight}), "
          f"update relative diff {r.update_rel_max:.1e} "
          f"-> {'same function' if ok else 'DIFFERENT'}")
    return 0 if ok else 1


def _cmd_doctor(args: argparse.Namespace) -> int:
    from harness.measure.doctor import exit_status, render, run_doctor

    findings = run_doctor(interval=args.interval)
    print(render(findings))
    return exit_status(findings)
