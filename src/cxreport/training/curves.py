"""The run's curves.png (losses, validation AUROC) from its log rows."""

from __future__ import annotations

import math
from pathlib import Path

from cxreport.fsio import atomic_path


def finite(x) -> bool:
    """A number that can be plotted, compared and written as JSON (None and NaN cannot)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = [h for h in history if "train_loss" in h]
    ev = [h for h in history if "val_loss" in h]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if tr:
        axes[0].plot([h["step"] for h in tr], [h["train_loss"] for h in tr], label="train loss", alpha=0.7)
    for key in ("val_loss", "val_lm_loss", "val_finding_loss"):  # only what validation measured
        pts = [(h["step"], h[key]) for h in ev if finite(h.get(key))]
        if pts:
            axes[0].plot(*zip(*pts), marker="o", label=key)
    axes[0].set(xlabel="step", title="losses")
    axes[0].legend()
    auroc = [(h["step"], h["val_auroc"]) for h in ev if finite(h.get("val_auroc"))]
    if auroc:
        axes[1].plot(*zip(*auroc), marker="o", color="C3")
        axes[1].set(xlabel="step", title="validation macro AUROC (findings)")
    else:
        axes[1].set_axis_off()  # a run without finding labels has no AUROC to show
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
