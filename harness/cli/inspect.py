"""The ``harness`` commands that inspect rather than run: list, plugins, check-backend, references, tiny, convert,
parity (one step, or trajectories with ``--steps``; its parser is here too) (see :mod:`harness.cli.main`)."""
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
    print("\n## Scenarios (`scenario:`), launchers (a backend's `launcher`) and executors (`harness run --on`)\n")
    from harness.run.executors import EXECUTORS
    from harness.run.launchers import LAUNCHERS
    from harness.run.scenarios import SCENARIOS

    rows = [["scenario", n, SCENARIOS.get(n).help, SCENARIOS.entry_points()[n]] for n in SCENARIOS.names()]
    rows += [["launcher", n, LAUNCHERS.get(n).help,
              LAUNCHERS.entry_points()[n]] for n in LAUNCHERS.names()]
    rows += [["executor", n, EXECUTORS.get(n).help, EXECUTORS.entry_points()[n]] for n in EXECUTORS.names()]
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
    results = check_backend(args.name, args.device, args.model, args.export_from, args.model_file,
                            golden_only=args.golden_only)
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


def _parity_steps(args: argparse.Namespace, other: dict[str, Any]) -> int:
    """``harness parity MODEL --steps N``: both backends trained side by side on the tiny dataset. Exit 0 once
    measured: rounding alone takes a correct pair out of the band sooner or later (an ill-conditioned model at
    once), so the step it leaves at is a figure to read beside a correct pair's, not a verdict."""
    from tabulate import tabulate

    from harness.backends.trajectory import trajectory
    from harness.data.tiny import make_tiny_dataset
    from harness.results.trajectories import summary_rows, verdict, write_trajectory
    from harness.run.runner import tiny_data_root

    a, b = args.backends
    root = make_tiny_dataset(args.data_root or str(tiny_data_root(Path("results"))))
    t = trajectory(args.model, a, b, args.steps, root, other_settings=other, width=args.width,
                   image_size=args.image_size)
    print(tabulate(summary_rows(t), headers=["step", f"loss {a}", f"loss {b}", "|loss diff|", "weight rel diff",
                                             "in band"], tablefmt="github"))
    print(f"\n{args.model}: {a} vs {b}, {args.steps} steps: {verdict(t)}; {t['wall_s']:.0f} s")
    if args.out:
        data, chart = write_trajectory(args.out, t)
        print(f"trajectory: {data}; chart: {chart}")
    return 0


def _cmd_parity(args: argparse.Namespace) -> int:
    from harness.backends.parity import UPDATE_REL_TOL, compare
    from harness.run.suite import parse_set

    other = parse_set(args.other or [])
    if args.steps is not None:
        return _parity_steps(args, other)
    r = compare(args.model, args.backends[0], args.backends[1], width=args.width, image_size=args.image_size,
                other_settings=other)
    ok = (r.logits_max_abs <= args.tol and r.loss_abs <= args.tol and r.running_stats_max_abs <= args.tol
          and r.update_rel_max <= UPDATE_REL_TOL)
    print(f"{args.model}: {args.backends[0]} vs {args.backends[1]}: logits max |diff| {r.logits_max_abs:.2e}, "
          f"loss |diff| {r.loss_abs:.2e}, BN running stats max |diff| {r.running_stats_max_abs:.2e}, "
          f"weights after one step max |diff| {r.weights_max_abs:.2e} ({r.worst_weight}), "
          f"update relative diff {r.update_rel_max:.1e} "
          f"-> {'same function' if ok else 'DIFFERENT'}")
    return 0 if ok else 1


def add_parity_parser(sub: Any) -> None:
    """``harness parity``: one step from the same weights and batch, or N steps side by side (``--steps``)."""
    p = sub.add_parser("parity", help="do two backends compute the same function from the same weights?")
    p.add_argument("model")
    p.add_argument("--backends", nargs=2, default=["torch", "mindspore"], metavar=("REFERENCE", "OTHER"))
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--tol", type=float, default=1e-4, help="one step: the largest |diff| of logits, loss and "
                   "BatchNorm statistics (default 1e-4)")
    p.add_argument("--other", action="append", metavar="KEY=VALUE", help="a setting of OTHER only (a deliberately "
                   "different side, e.g. nesterov=false); repeatable")
    p.add_argument("--steps", type=int, help="train both side by side for N steps on the tiny dataset instead: per "
                   "step the loss and weight differences and the step they leave the band")
    p.add_argument("--out", metavar="DIR", help="with --steps: write the trajectory (JSON) and its chart (HTML) here; "
                   "`harness report --format html` shows every trajectory in the folders it is given")
    p.add_argument("--data-root", metavar="DIR", help="with --steps: the tiny dataset's folder, made if missing "
                   "(default: results/_data/tiny, where harness run makes it)")
    p.set_defaults(func=_cmd_parity)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from harness.measure.doctor import exit_status, render, run_doctor

    findings = run_doctor(interval=args.interval)
    print(render(findings))
    return exit_status(findings)
