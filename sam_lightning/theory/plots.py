"""PNG figures of the theory experiments (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on CI machines and compute nodes
import matplotlib.pyplot as plt
import torch

COLORS = {"GD": "tab:red", "ERM": "tab:red", "n-SAM": "tab:blue", "1-SAM": "tab:green", "SAM": "tab:green"}


def plot_relu_functions(nets: dict, data, path: Path, summary: dict) -> Path:
    """One panel per method: the learned functions of all inits over the data points (Fig. 7)."""
    x, y = data
    lo, hi = float(x.min()), float(x.max())
    grid = torch.linspace(lo - 0.3, hi + 0.3, 600, dtype=x.dtype).unsqueeze(1)
    fig, axes = plt.subplots(1, len(nets), figsize=(5 * len(nets), 3.6), sharey=True)
    for ax, (name, models) in zip(axes, nets.items()):
        with torch.no_grad():
            for net in models:
                ax.plot(grid[:, 0], net(grid)[:, 0], color=COLORS.get(name, "k"), lw=1.2, alpha=0.8)
        ax.scatter(x[:, 0], y[:, 0], color="orange", zorder=3, s=25, label="training points")
        s = summary[name]
        ax.set_title(f"{name}: slope TV {s['slope_tv_mean']:.1f} ± {s['slope_tv_std']:.1f} ({s['inits']} inits)")
        ax.set_xlabel("x")
        ax.set_ylim(float(y.min()) - 1.5, float(y.max()) + 1.5)
    axes[0].set_ylabel("f(x)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_diag_histories(histories: dict, path: Path, title: str = "") -> Path:
    """Test and train loss against iterations, one line per (method, seed) (Fig. 6)."""
    fig, (ax_test, ax_train) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, runs in histories.items():
        for i, rows in enumerate(runs):
            it = [r["iteration"] for r in rows]
            kw = {"color": COLORS.get(name, "k"), "alpha": 0.8, "lw": 1.2, "label": name if i == 0 else None}
            ax_test.plot(it, [r["test_loss"] for r in rows], **kw)
            ax_train.plot(it, [r["train_loss"] for r in rows], **kw)
    for ax, what in ((ax_test, "test loss"), (ax_train, "train loss")):
        ax.set_xscale("symlog", linthresh=100)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel(what)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
