"""PNG bar charts of a report (matplotlib, headless)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from harness.errors import HarnessError

__all__ = ["write_charts"]


def write_charts(measured: pd.DataFrame, folder: str | Any) -> list[str]:
    """PNG bar charts of train throughput by backend and device, one per model; returns the file names."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(folder)
    names = []
    data = measured.dropna(subset=["train_images_per_s"]) if not measured.empty else measured
    for model, g in (data.groupby("model", sort=True) if not data.empty else []):
        labels = [f"{r['backend']}/{r['device']}" + (f"\n{r['variant']}" if r["variant"] else "")
                  for _, r in g.iterrows()]
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(labels)), 3.2))
        colors = ["#d9534f" if b == "mindspore" else "#337ab7" for b in g["backend"]]
        ax.bar(range(len(labels)), g["train_images_per_s"], color=colors)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylabel("train images/s (measured)")
        ax.set_title(str(model), fontsize=9)
        fig.tight_layout()
        name = f"throughput-{model!s}.png"
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            fig.savefig(out_dir / name, dpi=100)
        except OSError as exc:
            raise HarnessError(f"--charts {out_dir}: cannot write {name}: {exc.strerror or exc}") from None
        finally:
            plt.close(fig)
        names.append(name)
    return names
