"""PNG plots of a sweep, in the style of the paper's Fig. 1/4/16 (mean over seeds, 95% bootstrap CI).

test_error_vs_rho.png: test error against rho, one line per method, one panel per (data, model);
    methods that ignore rho (ERM) are a horizontal line with their CI as a band.
test_error_curves.png: test error over epochs, one panel per method, one line per rho.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on clusters or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sam_lightning.sweep.stats import bootstrap_ci  # noqa: E402
from sam_lightning.sweep.table import Row  # noqa: E402

CURVE_RESAMPLES = 1000  # one interval per epoch and line: seaborn's count keeps this quick


def _panels(n: int, width: float = 5.0, height: float = 3.6):
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def plot_test_error_vs_rho(rows: list[Row], path: Path) -> Path | None:
    panels: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        panels[(row.data, row.model)].append(row)
    if not any(r.rho is not None for r in rows):
        return None
    fig, axes = _panels(len(panels))
    for ax, ((data, model), members) in zip(axes, sorted(panels.items())):
        families: dict[tuple[str, ...], list[Row]] = defaultdict(list)
        for row in members:
            families[row.family].append(row)
        rhos = sorted({r.rho for r in members if r.rho is not None})
        for family in sorted(families.values(), key=lambda f: f[0].sort_key()):
            family.sort(key=lambda r: -1.0 if r.rho is None else r.rho)
            label = family[0].family_label
            if family[0].rho is None:  # the method ignores rho: a baseline across the whole axis
                line = ax.axhline(100 * family[0].test_mean, ls="--", lw=1.2, label=label)
                if family[0].ci and rhos:
                    ax.axhspan(100 * family[0].ci[0], 100 * family[0].ci[1], color=line.get_color(), alpha=0.15)
                continue
            x = np.array([r.rho for r in family])
            y = np.array([100 * r.test_mean for r in family])
            err = np.array([[100 * (r.test_mean - r.ci[0]), 100 * (r.ci[1] - r.test_mean)] if r.ci else [0.0, 0.0] for r in family]).T
            ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, label=label)
            for r in family:
                if r.best:
                    ax.plot([r.rho], [100 * r.test_mean], marker="*", ms=13, color="gold", mec="black", zorder=5)
        if rhos:
            ax.set_xscale("log")
            ax.set_xticks(rhos)
            ax.set_xticklabels([f"{r:g}" for r in rhos])
            ax.minorticks_off()
        ax.set_xlabel("rho")
        ax.set_ylabel("test error (%)")
        ax.set_title(f"{data} / {model}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Test error vs rho (mean, 95% bootstrap CI over seeds; star: best rho)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _curve(row: Row):
    """Epochs, mean test error (%) and CI band (or None) over the seeds of one row."""
    by_seed: dict = defaultdict(dict)
    for run in row.runs:
        for h in run.history:
            by_seed[run.seed if run.seed is not None else run.name].setdefault(h["epoch"], []).append(h["test/error"])
    epochs = sorted(set.intersection(*(set(s) for s in by_seed.values()))) if by_seed else []
    means, lows, highs = [], [], []
    for e in epochs:
        values = [float(np.mean(s[e])) for s in by_seed.values()]
        ci = bootstrap_ci(values, n_resamples=CURVE_RESAMPLES)
        means.append(100 * np.mean(values))
        lows.append(100 * ci[0] if ci else np.nan)
        highs.append(100 * ci[1] if ci else np.nan)
    return np.array(epochs) + 1, np.array(means), np.array(lows), np.array(highs)


def plot_test_error_curves(rows: list[Row], path: Path) -> Path | None:
    families: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        families[(row.data, row.model, row.family)].append(row)
    if not any(run.history for row in rows for run in row.runs):
        return None
    ordered = sorted(families.values(), key=lambda f: f[0].sort_key())
    fig, axes = _panels(len(ordered), width=4.6, height=3.3)
    for ax, family in zip(axes, ordered):
        family.sort(key=lambda r: -1.0 if r.rho is None else r.rho)
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(family)))
        for row, color in zip(family, colors):
            epochs, means, lows, highs = _curve(row)
            if not len(epochs):
                continue
            label = row.label if row.rho is None else f"rho={row.rho:g}"
            ax.plot(epochs, means, marker="o" if len(epochs) < 3 else None, ms=3, color=color, label=f"{label} (n={len(row.seeds)})")
            if not np.all(np.isnan(lows)):
                ax.fill_between(epochs, lows, highs, color=color, alpha=0.2)
        first = family[0]
        ax.set_title(f"{first.family_label} | {first.data} / {first.model}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("test error (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Test error over epochs (mean, 95% bootstrap CI over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
