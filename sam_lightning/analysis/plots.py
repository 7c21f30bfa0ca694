"""PNG figures of the analysis results (matplotlib's object API: no pyplot state, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure


def plot_sharpness(records: Sequence[dict], path: str | Path) -> Path:
    """Sharpness against rho (Fig. 2 style), one panel per m and one line per checkpoint and BN mode;
    a second row shows the suboptimality factor, steps-step over 1-step value (Fig. 3), when computed."""
    ms = sorted({r["m"] for r in records})
    curves = list(dict.fromkeys((r["checkpoint"], r["bn"]) for r in records))
    checkpoints = list(dict.fromkeys(label for label, _ in curves))  # one colour each, BN mode by line style
    with_factor = any(r.get("suboptimality_factor") is not None for r in records)
    show_bn = len({bn for _, bn in curves}) > 1
    rows = 2 if with_factor else 1
    fig = Figure(figsize=(4.2 * len(ms) + 1.0, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, len(ms), squeeze=False)
    styles = {"train": "-", "eval": "--"}
    for col, m in enumerate(ms):
        for label, bn in curves:
            points = sorted((r for r in records if r["m"] == m and r["checkpoint"] == label and r["bn"] == bn), key=lambda r: r["rho"])
            if not points:
                continue
            name = f"{label}, BN {bn}" if show_bn else label
            style = dict(color=f"C{checkpoints.index(label) % 10}", linestyle=styles.get(bn, "-"), marker="o", markersize=4, label=name)
            rhos = [r["rho"] for r in points]
            axes[0][col].plot(rhos, [r["sharpness"] for r in points], **style)
            if with_factor:
                axes[1][col].plot(rhos, [r.get("suboptimality_factor") or float("nan") for r in points], **style)
        values = [r["sharpness"] for r in records if r["m"] == m]
        if min(values) > 0 and max(values) > 100 * min(values):  # e.g. train- vs eval-mode BN (Fig. 19)
            axes[0][col].set_yscale("log")
        steps = records[0]["steps"]
        axes[0][col].set(title=f"{m}-sharpness ({steps} steps)", xlabel="rho", ylabel="sharpness")
        if with_factor:
            axes[1][col].axhline(1.0, color="0.7", linewidth=0.8, zorder=0)
            axes[1][col].set(title=f"suboptimality factor, {steps} steps vs 1", xlabel="rho", ylabel="factor")
    axes[0][-1].legend(fontsize="small")
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_interpolation(points: Sequence[dict], path: str | Path, label_a: str, label_b: str, title: str = "", endpoints: dict | None = None) -> Path:
    """Train/test loss and error along (1 - t) A + t B (Fig. 10 style); A at t = 0, B at t = 1.
    `endpoints` ({"a": metrics, "b": metrics}, each checkpoint as saved) are drawn as crosses."""
    ts = [p["t"] for p in points]
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    ax_loss, ax_err = fig.subplots(1, 2)
    for split, color in (("train", "C0"), ("test", "C1")):
        ax_loss.plot(ts, [p[f"{split}_loss"] for p in points], color=color, marker="o", markersize=3, label=split)
        ax_err.plot(ts, [100 * p[f"{split}_error"] for p in points], color=color, marker="o", markersize=3, label=split)
        if endpoints:
            saved = dict(color=color, marker="x", linestyle="none", markersize=7, label=f"{split}, as saved")
            ax_loss.plot([0.0, 1.0], [endpoints[k][f"{split}_loss"] for k in ("a", "b")], **saved)
            ax_err.plot([0.0, 1.0], [100 * endpoints[k][f"{split}_error"] for k in ("a", "b")], **saved)
    for ax, ylabel in ((ax_loss, "cross-entropy loss"), (ax_err, "error (%)")):
        for t in (0.0, 1.0):
            ax.axvline(t, color="0.7", linewidth=0.8, zorder=0)
        ax.set(xlabel=f"t   (0: {label_a}, 1: {label_b})", ylabel=ylabel)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.savefig(path, dpi=110)
    return Path(path)
