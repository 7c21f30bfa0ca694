"""Every PNG of the project (matplotlib's object API: no pyplot state, no display needed).

Shared conventions: one colour list without pale colours; rho always on a log axis ticked at the
values run (`rho_axis`); means over seeds with their 95% bootstrap interval as bars or bands and
the number of seeds in the legend; panels that compare methods share their y-axis.

sweep_vs_rho, sweep_points, sweep_curves: the summary of a multirun (sweep.py and the end-of-multirun table),
    training runs (test error over epochs) and theory runs (test loss over steps) alike.
sharpness, interpolation: the analysis commands. relu_functions: the theory's 1-D ReLU figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from sam_lightning.stats import bootstrap_ci, format_mean_ci

COLORS = (
    "tab:blue",
    "tab:red",
    "tab:green",
    "tab:purple",
    "tab:orange",
    "tab:brown",
    "tab:pink",
    "tab:gray",
    "tab:cyan",
    "black",
)
KEY = "key:"  # the group columns of a sweep summary (sam_lightning.sweep.collect.KEY)
RHO = KEY + "method.rho"
CURVE_NAMES = {"train/noisy_fit": "flipped labels fitted", "train/clean_error": "train error, clean labels"}
CURVE_RESAMPLES = 1000  # one interval per logged point and line: seaborn's count keeps this quick


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _two_and_five(value: float, _pos=None) -> str:
    """Minor log ticks labelled at 2 and 5 times a power of ten only (0.02, 0.05, 0.2, ...)."""
    return f"{value:g}" if value > 0 and round(value / 10 ** np.floor(np.log10(value))) in (2, 5) else ""


def rho_axis(ax, rhos: Sequence[float], label: str = "rho") -> None:
    """rho on a log axis ticked at the values run: the same scale in every plot. Values sampled by
    a search (many, or closer than a factor 1.3 to each other) would collide: plain log ticks then."""
    rhos = sorted({float(r) for r in rhos if r is not None and np.isfinite(r) and r > 0})
    ax.set_xscale("log")
    gridded = len(rhos) <= 8 and all(b >= 1.3 * a for a, b in zip(rhos, rhos[1:]))
    if rhos and gridded:
        ax.set_xticks(rhos, [f"{r:g}" for r in rhos])
        ax.xaxis.set_minor_locator(NullLocator())
    elif rhos:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(_two_and_five))
    ax.set_xlabel(f"{label} (log scale)")


def _save(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _log_if_wide(ax, values) -> None:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) and v.min() > 0 and v.max() > 30 * v.min():
        ax.set_yscale("log")


# -- sweeps ---------------------------------------------------------------------------------------


def _what(metric: str) -> tuple[str, float]:
    """('test error (%)', 100) or ('test loss', 1) for a results.json metric name."""
    name = metric.removeprefix("final_").replace("_", " ")
    return (f"{name} (%)", 100.0) if metric.endswith("error") else (name, 1.0)


def _family_label(row: pd.Series, columns: list[str], drop: str = "") -> str:
    """The row's values of `columns` as key=value (the method as its name); `drop`: a prefix left off the keys."""
    parts = [
        str(row[c])
        if c == KEY + "method"
        else f"{c[len(KEY) :].removeprefix(drop)}={row[c]:g}"
        if isinstance(row[c], float)
        else f"{c[len(KEY) :].removeprefix(drop)}={row[c]}"
        for c in columns
        if pd.notna(row[c])
    ]
    return " ".join(parts) or "all runs"


def _seeds(members: pd.DataFrame) -> str:
    lo, hi = int(members["n_seeds"].min()), int(members["n_seeds"].max())
    return f"{lo} seed{'s' * (hi > 1)}" if lo == hi else f"{lo}-{hi} seeds"


def _families(summary: pd.DataFrame, groups: list[str]) -> list[tuple[str, pd.DataFrame]]:
    family = [c for c in groups if c != RHO]
    if not family:
        return [("all runs", summary)]
    return [
        (_family_label(members.iloc[0], family), members)
        for _, members in summary.groupby(family, dropna=False, sort=False)
    ]


def _curve_panels(summary: pd.DataFrame, groups: list[str]) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """The panels of sweep_curves: one per method, each with the columns that tell its lines apart
    (rho, sigma, switch epoch, ...: what varies within it, or all it sets when it has one row). A
    sweep without a method column gets one panel per rho family. Rows keep the summary's order
    (sorted by table.aggregate)."""
    method = KEY + "method"
    if method not in groups:
        return [(label, members, [RHO] if RHO in groups else []) for label, members in _families(summary, groups)]
    panels = []
    for name, members in summary.groupby(method, dropna=False, sort=False):
        own = [c for c in groups if c != method and members[c].notna().any()]
        panels.append((str(name), members, [c for c in own if members[c].nunique(dropna=False) > 1] or own))
    return panels


def sweep_vs_rho(summary: pd.DataFrame, info: dict, path: str | Path) -> Path | None:
    """The metric against rho, one line per method (family), mean and 95% CI over seeds; a method
    without rho is a horizontal line with its CI as a band; a star marks a best rho whose interval
    lies below every other rho's."""
    if RHO not in info["groups"] or (pd.to_numeric(summary[RHO], errors="coerce") > 0).sum() < 2:
        return None
    families = _families(summary, info["groups"])
    if len(families) > 4 and all(len(members) == 1 for _, members in families):
        return _trials_vs_rho(summary, info, path)
    what, scale = _what(info["metric"])
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, (label, members) in enumerate(families):
        members = members.sort_values(RHO)
        label = f"{label} ({_seeds(members)})"
        positive = pd.to_numeric(members[RHO], errors="coerce") > 0
        for _, row in members[~positive].iterrows():  # no rho (ERM) or rho = 0: a baseline across the axis
            ax.axhline(
                scale * row["mean"],
                ls="--",
                lw=1.2,
                color=color(i),
                label=label if pd.isna(row[RHO]) else f"{label}, rho=0",
            )
            if np.isfinite(row["ci_low"]):
                ax.axhspan(scale * row["ci_low"], scale * row["ci_high"], color=color(i), alpha=0.15)
        members = members[positive]
        if members.empty:
            continue
        y = scale * members["mean"].to_numpy()
        err = np.nan_to_num(
            scale * np.abs(np.vstack([members["mean"] - members["ci_low"], members["ci_high"] - members["mean"]]))
        )
        ax.errorbar(members[RHO].astype(float), y, yerr=err, marker="o", ms=4, capsize=3, color=color(i), label=label)
        for _, r in members[members["separated"]].iterrows():
            ax.plot([r[RHO]], [scale * r["mean"]], marker="*", ms=14, color=color(i), mec="black", zorder=5, ls="none")
    rho_axis(ax, pd.to_numeric(summary[RHO], errors="coerce").dropna())
    _log_if_wide(ax, scale * summary["mean"])
    ax.set_ylabel(what)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    star = (
        "\nstar: the best rho of a method, its interval below every other rho's" if summary["separated"].any() else ""
    )
    ax.set_title(f"{what.capitalize()} against rho: mean over seeds with 95% bootstrap interval{star}", fontsize=9)
    return _save(fig, path)


def _trials_vs_rho(summary: pd.DataFrame, info: dict, path: str | Path) -> Path:
    """An optimizing sweeper's trials (Optuna): every row its own sampled rho and other values, so
    one point per trial, coloured by the other sampled value when there is one (a colour bar, not
    one legend entry per value), the best trial ringed."""
    what, scale = _what(info["metric"])
    others = [c for c in info["groups"] if c != RHO and pd.to_numeric(summary[c], errors="coerce").notna().all()]
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    x, y = summary[RHO].astype(float).to_numpy(), scale * summary["mean"].to_numpy()
    err = np.nan_to_num(
        scale * np.abs(np.vstack([summary["mean"] - summary["ci_low"], summary["ci_high"] - summary["mean"]]))
    )
    ax.errorbar(x, y, yerr=err, ls="none", color="0.6", capsize=2, zorder=1)
    if len(others) == 1:
        values = pd.to_numeric(summary[others[0]]).to_numpy(dtype=float)
        positive = (values > 0).all()
        norm = LogNorm(values.min(), values.max()) if positive and values.max() > values.min() else None
        points = ax.scatter(x, y, c=values, cmap="viridis", norm=norm, s=30, zorder=3)
        bar = fig.colorbar(points, ax=ax, label=others[0][len(KEY) :] + (" (log scale)" if norm is not None else ""))
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        bar.ax.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))
    else:
        ax.scatter(x, y, color=color(0), s=30, zorder=3)
    best = int(np.nanargmin(y))
    ax.plot([x[best]], [y[best]], marker="o", ms=12, mfc="none", mec="black", ls="none", zorder=4, label="best trial")
    rho_axis(ax, x)
    _log_if_wide(ax, y)
    ax.set_ylabel(what)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{what.capitalize()} against rho: one point per trial ({len(summary)} trials)", fontsize=9)
    return _save(fig, path)


def sweep_points(summary: pd.DataFrame, info: dict, runs: pd.DataFrame, path: str | Path) -> Path | None:
    """The metric of every table row (paper Fig. 1 style): mean over seeds with its 95% CI, each
    seed as a dot. For sweeps whose rows are not a curve against rho (sweep_vs_rho draws those)."""
    if len(summary) < 2:
        return None
    what, scale = _what(info["metric"])
    metric = runs.set_index("job")[info["metric"]]
    fig = Figure(figsize=(6.4, 1.4 + 0.42 * len(summary)), layout="constrained")
    ax = fig.subplots()
    for y, (i, row) in enumerate(summary.iloc[::-1].iterrows()):
        seeds = scale * metric.reindex(row["jobs"]).dropna().to_numpy()
        ax.plot(
            seeds, np.full(len(seeds), y), ls="none", marker=".", ms=6, color=color(i), alpha=0.5, zorder=4
        )  # above the whiskers
        err = np.nan_to_num(scale * np.abs([[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]]))
        ax.errorbar([scale * row["mean"]], [y], xerr=err, marker="o", ms=6, capsize=4, color=color(i))
    names = [
        f"{_family_label(row, info['groups'])} ({_seeds(summary.loc[[i]])})" for i, row in summary.iloc[::-1].iterrows()
    ]
    ax.set_yticks(range(len(summary)), names, fontsize=8)
    ax.set_xlabel(what)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(f"{what.capitalize()}: mean over seeds with 95% bootstrap interval, dots: seeds", fontsize=9)
    return _save(fig, path)


def _history_frame(histories: dict, jobs: list[str], seeds: dict, key: str) -> pd.DataFrame:
    """x (epoch, 1-based, or step) by seed: the runs' logged values of `key`."""
    rows = []
    for job in jobs:
        for h in histories.get(job, []):
            if h.get(key) is None:
                continue
            x = h["epoch"] + 1 if "epoch" in h else h.get("step")
            if x is not None:
                rows.append({"x": x, "seed": seeds.get(job, job), "y": h[key]})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).pivot_table(index="x", columns="seed", values="y", aggfunc="mean").dropna()


def _band(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    lows, highs = [], []
    for values in frame.to_numpy():
        ci = bootstrap_ci(values, n_resamples=CURVE_RESAMPLES)
        lows.append(ci[0] if ci else np.nan)
        highs.append(ci[1] if ci else np.nan)
    return np.array(lows), np.array(highs)


def sweep_curves(
    summary: pd.DataFrame, info: dict, runs: pd.DataFrame, histories: dict, path: str | Path
) -> Path | None:
    """Test (top) and train (bottom) metric over epochs or steps, mean over seeds with a 95% CI band;
    label-noise runs add train/noisy_fit and train/clean_error. One panel per method with one line
    per row (its rho, sigma, ...); when every method has a single row, one panel per metric with one
    line per method. Panels of a row share the y-axis."""
    test_key = "test/error" if info["metric"].endswith("error") else "test/loss"
    train_key = test_key.replace("test/", "train/")
    _, scale = _what(info["metric"])
    # label-noise runs also log how they fit the flipped and the clean labels (paper Fig. 12)
    extra_keys = ("train/noisy_fit", "train/clean_error") if scale == 100 else ()
    seeds = {r.job: r.seed if pd.notna(r.seed) else r.job for r in runs.itertuples()}
    families = _curve_panels(summary, info["groups"])
    single = all(len(m) == 1 for _, m, _ in families)
    panels = [("", summary, [])] if single else families
    family_of = {idx: i for i, (_, members, _) in enumerate(families) for idx in members.index}
    jobs = [j for js in summary["jobs"] for j in js]
    keys = [
        k
        for k in (test_key, train_key, *extra_keys)
        if any(h.get(k) is not None for j in jobs for h in histories.get(j, []))
    ]
    if not keys:
        return None
    if single:  # one panel per metric: side by side, or a 2-column grid for more than two
        cols = 2 if len(keys) > 2 else len(keys)
        rows = -(-len(keys) // cols)
        fig = Figure(figsize=(5.2 * cols, 3.6 * rows + 0.2), layout="constrained")
        axes = [[ax] for ax in fig.subplots(rows, cols, squeeze=False, sharex=True).ravel()[: len(keys)]]
    else:  # a row per metric, a panel per method; panels of a row share the y-axis
        fig = Figure(figsize=(4.8 * len(panels), 3.4 * len(keys)), layout="constrained")
        axes = fig.subplots(len(keys), len(panels), squeeze=False, sharey="row", sharex=True)
    by_step = False
    for r, key in enumerate(keys):
        for c, (title, members, line_keys) in enumerate(panels):
            ax = axes[r][c]
            for i, (_, row) in enumerate(members.iterrows()):
                frame = _history_frame(histories, row["jobs"], seeds, key)
                if frame.empty:
                    continue
                by_step = by_step or not any("epoch" in h for h in histories.get(row["jobs"][0], []))
                if by_step:
                    frame = frame[frame.index > 0]  # log x: start at the first logged step, no line from 0
                x, mean = frame.index.to_numpy(), scale * frame.mean(axis=1).to_numpy()
                label = (
                    _family_label(row, [k for k in info["groups"] if k != RHO])
                    if single
                    else _family_label(row, line_keys, drop="method.")
                    if any(pd.notna(row[k]) for k in line_keys)
                    else "no rho"
                )
                k = family_of[row.name] if single else i
                ax.plot(
                    x,
                    mean,
                    color=color(k),
                    marker="o" if len(x) < 4 else None,
                    ms=3,
                    label=f"{label} ({frame.shape[1]} seed{'s' * (frame.shape[1] > 1)})",
                )
                low, high = _band(frame)
                if np.isfinite(low).any():
                    ax.fill_between(x, scale * low, scale * high, color=color(k), alpha=0.2, lw=0)
            ax.set_ylabel(CURVE_NAMES.get(key, key.replace("/", " ")) + (" (%)" if scale == 100 else ""))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            if r == 0 and title:
                ax.set_title(title, fontsize=9)
            if r == len(keys) - 1 or single:
                ax.set_xlabel("step (log scale)" if by_step else "epoch")
        for ax in axes[r]:
            if by_step:
                ax.set_xscale("log")
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if scale == 1:
                ax.set_yscale("log")  # losses: decades, as in the paper's Fig. 6
    # the curves are the logged values, whichever the table's metric (best, at the best val epoch, ...)
    what = "test error (%)" if scale == 100 else "test loss"
    quantity = what.replace("test ", "test and train ", 1) if len(keys) >= 2 else what
    fig.suptitle(
        f"{quantity.capitalize()} over {'steps' if by_step else 'epochs'}: mean over seeds with 95% bootstrap band",
        fontsize=10,
    )
    return _save(fig, path)


# -- analysis -------------------------------------------------------------------------------------


def sharpness(records: Sequence[dict], path: str | Path) -> Path:
    """m-sharpness against rho (Fig. 2 style): the loss increase at the (approximate) worst point of
    radius rho, mean over batches with the per-batch range as a band; one panel per m, one line per
    checkpoint label and BN mode (checkpoints sharing a label: their mean, the 95% CI as the band).
    A second row shows the suboptimality factor, steps-step over 1-step
    value (Fig. 3), when computed."""
    ms = sorted({r["m"] for r in records})
    curves = list(dict.fromkeys((r["checkpoint"], r["bn"]) for r in records))
    checkpoints = list(dict.fromkeys(label for label, _ in curves))  # one colour each, BN mode by line style
    with_factor = any(r.get("suboptimality_factor") is not None for r in records)
    show_bn = len({bn for _, bn in curves}) > 1
    rows = 2 if with_factor else 1
    fig = Figure(figsize=(4.2 * len(ms) + 1.0, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, len(ms), squeeze=False, sharey="row")
    styles = {"train": "-", "eval": "--"}
    any_repeats = False
    for col, m in enumerate(ms):
        for label, bn in curves:
            points = pd.DataFrame([r for r in records if r["m"] == m and r["checkpoint"] == label and r["bn"] == bn])
            if points.empty:
                continue
            repeats = int(points.groupby("rho").size().max())  # checkpoints sharing the label (seeds)
            any_repeats = any_repeats or repeats > 1
            name = (f"{label}, BN {bn}" if show_bn else label) + (f" ({repeats} checkpoints)" if repeats > 1 else "")
            c = color(checkpoints.index(label))
            style = dict(color=c, linestyle=styles.get(bn, "-"), marker="o", markersize=4, label=name)
            by_rho = points.sort_values("rho").groupby("rho", sort=True)
            rhos = list(by_rho.groups)
            axes[0][col].plot(rhos, by_rho["sharpness"].mean(), **style)
            if repeats > 1:  # band: 95% CI over the checkpoints
                spread = [bootstrap_ci(g["sharpness"].to_numpy()) or (np.nan, np.nan) for _, g in by_rho]
            else:  # band: the per-batch range of the one checkpoint
                spread = [
                    (min(g["per_batch"].iloc[0]), max(g["per_batch"].iloc[0]))
                    if g["per_batch"].iloc[0]
                    else (np.nan, np.nan)
                    for _, g in by_rho
                ]
            axes[0][col].fill_between(
                rhos, [lo for lo, _ in spread], [hi for _, hi in spread], color=c, alpha=0.15, lw=0
            )
            if with_factor:
                axes[1][col].plot(
                    rhos,
                    by_rho["suboptimality_factor"].apply(lambda v: pd.to_numeric(v, errors="coerce").mean()),
                    **style,
                )
        values = [v for r in records if r["m"] == m for v in (r.get("per_batch") or [r["sharpness"]])]
        if min(values) > 0 and max(values) > 100 * min(values):  # e.g. train- vs eval-mode BN (Fig. 19)
            axes[0][col].set_yscale("log")
        steps = records[0]["ascent_steps"]
        rho_axis(axes[0][col], [r["rho"] for r in records])
        axes[0][col].set(title=f"{m}-sharpness ({steps} ascent steps)", ylabel="loss increase L(w + e) - L(w)")
        if with_factor:
            rho_axis(axes[1][col], [r["rho"] for r in records])
            axes[1][col].axhline(1.0, color="0.7", linewidth=0.8, zorder=0)
            axes[1][col].set(title=f"suboptimality factor, {steps} steps vs 1", ylabel="factor")
    title = (
        "line: mean over batches and checkpoints\nband: 95% CI over checkpoints (one: per-batch range)"
        if any_repeats
        else "line: mean over batches\nband: per-batch range"
    )
    axes[0][-1].legend(fontsize="small", title=title, title_fontsize="small")
    return _save(fig, path)


def interpolation(
    points: Sequence[dict], path: str | Path, label_a: str, label_b: str, title: str = "", endpoints: dict | None = None
) -> Path:
    """Train/test loss and error along (1 - t) A + t B (Fig. 10 style); A at t = 0, B at t = 1.
    `endpoints` ({"a": metrics, "b": metrics}, each checkpoint as saved) are drawn as crosses."""
    ts = [p["t"] for p in points]
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    ax_loss, ax_err = fig.subplots(1, 2)
    for split, c in (("train", color(0)), ("test", color(1))):
        ax_loss.plot(ts, [p[f"{split}_loss"] for p in points], color=c, marker="o", markersize=3, label=split)
        ax_err.plot(ts, [100 * p[f"{split}_error"] for p in points], color=c, marker="o", markersize=3, label=split)
        if endpoints:
            saved = dict(color=c, marker="x", linestyle="none", markersize=7, label=f"{split}, as saved")
            ax_loss.plot([0.0, 1.0], [endpoints[k][f"{split}_loss"] for k in ("a", "b")], **saved)
            ax_err.plot([0.0, 1.0], [100 * endpoints[k][f"{split}_error"] for k in ("a", "b")], **saved)
    for ax, ylabel in ((ax_loss, "cross-entropy loss"), (ax_err, "error (%)")):
        for t in (0.0, 1.0):
            ax.axvline(t, color="0.7", linewidth=0.8, zorder=0)
        ax.set(xlabel=f"t   (0: {label_a}, 1: {label_b})", ylabel=ylabel)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    return _save(fig, path)


# -- theory ---------------------------------------------------------------------------------------


def relu_functions(nets: dict, data, path: str | Path, summary: dict) -> Path:
    """One panel per method: the learned functions of all inits over the data points (Fig. 7)."""
    import torch

    x, y = data
    lo, hi = float(x.min()), float(x.max())
    grid = torch.linspace(lo - 0.3, hi + 0.3, 600, dtype=x.dtype).unsqueeze(1)
    fig = Figure(figsize=(5 * len(nets), 3.6), layout="constrained")
    axes = fig.subplots(1, len(nets), sharey=True)
    for i, (ax, (name, models)) in enumerate(zip(axes, nets.items())):
        with torch.no_grad():
            for net in models:
                ax.plot(grid[:, 0], net(grid)[:, 0], color=color(i), lw=1.2, alpha=0.8)
        ax.scatter(x[:, 0], y[:, 0], color="black", zorder=3, s=25, label="training points")
        s = summary[name]
        tv = format_mean_ci(s["slope_tv_mean"], s["slope_tv_ci_low"], s["slope_tv_ci_high"], spec=".0f")
        ax.set_title(f"{name}: slope total variation {tv} ({s['inits']} inits)", fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylim(float(y.min()) - 1.5, float(y.max()) + 1.5)
    axes[0].set_ylabel("f(x)")
    axes[0].legend(loc="lower right", fontsize=8)
    return _save(fig, path, dpi=90)
