"""Training trajectories (:mod:`harness.backends.trajectory`) on file and on the page: one JSON file per pair,
``trajectory-MODEL-A-B.json``, beside a self-contained HTML chart of it; the summary ``harness parity --steps``
prints; and the chart and table the HTML report shows for every trajectory file in the folders it is given."""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.backends.trajectory import FILE_PREFIX
from harness.errors import HarnessError
from harness.files import read_text
from harness.results.html_charts import MAX_CURVE_POINTS
from harness.results.html_page import Page, escape

__all__ = ["find_trajectories", "read_trajectory", "summary_rows", "trajectory_chart", "trajectory_section",
           "verdict", "write_trajectory"]

#: What every trajectory file holds (the rest is informative).
_KEYS = ("model", "backends", "steps", "band_text", "exit_step", "loss_a", "loss_b", "loss_diff", "weight_rel")


def _stem(traj: dict[str, Any]) -> str:
    a, b = traj["backends"]
    return f"{FILE_PREFIX}{traj['model']}-{a}-{b}"


def write_trajectory(folder: str | Path, traj: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``traj`` as JSON and its chart as one HTML page into ``folder`` (made if missing); both paths."""
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
        data, chart = out / f"{_stem(traj)}.json", out / f"{_stem(traj)}.html"
        data.write_text(json.dumps(traj, indent=1) + "\n", encoding="utf-8")
        page = Page(traj["backends"])
        trajectory_section(page, [traj])
        a, b = traj["backends"]
        chart.write_text(page.html(f"{traj['model']}: {a} and {b} trained side by side"), encoding="utf-8")
    except OSError as exc:
        raise HarnessError(f"{out}: cannot write the trajectory: {exc.strerror or exc}") from None
    return data, chart


def read_trajectory(path: str | Path) -> dict[str, Any]:
    """A trajectory file, or one line naming it and what is wrong."""
    try:
        traj = json.loads(read_text(path, "trajectory file", max_bytes=None))
    except ValueError as exc:
        raise HarnessError(f"{path}: not a trajectory file (not JSON: {exc})") from None
    missing = [k for k in _KEYS if not isinstance(traj, dict) or k not in traj]
    if missing:
        raise HarnessError(f"{path}: not a trajectory file (no '{missing[0]}')")
    return dict(traj)


def find_trajectories(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The trajectory files in the given folders (searched recursively), read."""
    found = sorted(f for p in map(Path, paths) if p.is_dir() for f in p.rglob(f"{FILE_PREFIX}*.json"))
    return [read_trajectory(f) for f in found]


def _shown_steps(steps: int, exit_step: int | None) -> list[int]:
    """Steps 1, 2, 5, 10, 20, 50, ... up to ``steps``, the last one and the band exit."""
    marks = {steps, *([exit_step] if exit_step else [])}
    k = 1
    while k <= steps:
        marks |= {s for s in (k, 2 * k, 5 * k) if s <= steps}
        k *= 10
    return sorted(marks)


def summary_rows(traj: dict[str, Any]) -> list[list[Any]]:
    """``[step, loss a, loss b, |loss diff|, weight rel diff, in band]`` at the shown steps."""
    rows = []
    for k in _shown_steps(int(traj["steps"]), traj["exit_step"]):
        i = k - 1
        gone = traj["exit_step"] is not None and k >= traj["exit_step"]
        rows.append([k, f"{traj['loss_a'][i]:.5f}", f"{traj['loss_b'][i]:.5f}", f"{traj['loss_diff'][i]:.2e}",
                     f"{traj['weight_rel'][i]:.2e}", "left" if k == traj["exit_step"] else "out" if gone else "yes"])
    return rows


def verdict(traj: dict[str, Any]) -> str:
    """One line: the band exit step (or none), the band, and the final differences."""
    where = f"leaves the band at step {traj['exit_step']}" if traj["exit_step"] else "stays in the band"
    return (f"{where} ({traj['band_text']}); final |loss diff| {traj['loss_diff'][-1]:.2e}, final weight rel diff "
            f"{traj['weight_rel'][-1]:.2e}")


def trajectory_chart(page: Page, traj: dict[str, Any]) -> None:
    """Both loss curves (top) and the two differences on a log scale with the band's weight bound (bottom)."""
    from plotly.subplots import make_subplots

    a, b = traj["backends"]
    n = int(traj["steps"])
    stride = max(1, math.ceil(n / MAX_CURVE_POINTS))
    x = list(range(1, n + 1))[::stride]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.55, 0.45])
    for name, key, dash in ((a, "loss_a", "solid"), (b, "loss_b", "dot")):
        fig.add_scatter(x=x, y=traj[key][::stride], mode="lines", name=f"loss, {escape(name)}", row=1, col=1,
                        line={"color": page.colors.get(name), "dash": dash, "width": 1.5})
    for label, key in (("|loss diff|", "loss_diff"), ("weight rel diff", "weight_rel")):
        # a zero difference has no place on a log axis: drawn at the float32 epsilon's order instead
        fig.add_scatter(x=x, y=[max(v, 1e-9) for v in traj[key][::stride]], mode="lines", name=label, row=2, col=1)
    fig.add_hline(y=traj.get("band", {}).get("weight_rel", 1e-3), line_dash="dash", line_color="#999", row=2, col=1,
                  annotation_text="band: weight rel diff")
    if traj["exit_step"]:
        fig.add_vline(x=traj["exit_step"], line_dash="dot", line_color="#d62728")
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="difference", type="log", exponentformat="e", row=2, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(title=f"{escape(traj['model'])}: {escape(a)} and {escape(b)} from the same weights and batches")
    page.chart(fig, height=560)


def trajectory_section(page: Page, trajectories: list[dict[str, Any]]) -> None:
    """A section with each trajectory's verdict and chart (nothing without one)."""
    if not trajectories:
        return
    page.heading(2, "Training trajectories side by side")
    page.note("Two backends trained from the same weights on the same host batches in the same order (harness parity "
              "--steps): per step the loss of each, their difference and the relative weight difference "
              "||w_b - w_a|| / ||w_a|| over the trainable tensors.")
    for traj in trajectories:
        a, b = traj["backends"]
        other = traj.get("other_settings") or {}
        changed = f" (only {escape(b)}: {escape(', '.join(f'{k}={v}' for k, v in other.items()))})" if other else ""
        page.heading(3, f"{traj['model']}: {a} vs {b}, {traj['steps']} steps")
        page.note(escape(verdict(traj)) + changed)
        trajectory_chart(page, traj)
