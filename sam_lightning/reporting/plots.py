"""Every PNG of the project (matplotlib's object API: no pyplot state, no display needed).

Shared conventions, for figures that go into a draft as they come: one colour per method in every
panel and figure of a sweep (`method_colors`; ERM, the reference, dark grey and dashed, drawn in
every panel that compares with it), the settings of one method told apart by shade, line style and
markers; rho always on a log axis ticked at the values run (`rho_axis`); means over seeds with their
interval as bars or bands, named for what it is (`stats.interval_name`: the range of 2-3 seeds, a 95%
bootstrap CI for more) and the number of seeds in the legend; legends outside the data; panels that
compare methods share their y-axis.

sweep_vs_rho, sweep_vs_switch, sweep_points, sweep_curves: the summary of a multirun (sweep.py and the end-of-multirun table),
    training runs (test error over epochs) and theory runs (test loss over steps) alike.
sharpness, interpolation: the analysis commands. relu_functions: the theory's 1-D ReLU figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from sam_lightning.reporting.collect import KEY, RHO, SWITCH_AT
from sam_lightning.reporting.stats import bootstrap_ci, format_mean_ci, interval_name
from sam_lightning.run.results import (
    TEST_ERROR,
    TEST_LOSS,
    TRAIN_CLEAN_ERROR,
    TRAIN_ERROR,
    TRAIN_LOSS,
    TRAIN_NOISY_FIT,
    is_error,
)
from sam_lightning.variants import ERM

COLORS = (
    "tab:blue",
    "tab:red",
    "tab:green",
    "tab:purple",
    "tab:orange",
    "tab:brown",
    "tab:pink",
    "tab:cyan",
    "tab:olive",
)
REFERENCE = ERM.name  # the baseline every other method is read against
REFERENCE_COLOR = "0.25"  # dark grey: no method's colour
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
CURVE_NAMES = {TRAIN_NOISY_FIT: "flipped labels fitted", TRAIN_CLEAN_ERROR: "train error, clean labels"}
CURVE_RESAMPLES = 1000  # one interval per logged point and line: seaborn's count keeps this quick


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def method_colors(names) -> dict[str, str]:
    """One colour per method, the same in every panel and figure of a sweep (given its methods in
    the table's order): ERM the reference grey, the others the palette in turn."""
    others = [n for n in dict.fromkeys(str(n) for n in names) if n != REFERENCE]
    return {REFERENCE: REFERENCE_COLOR, **{n: color(i) for i, n in enumerate(others)}}


def shade(base: str, i: int, n: int) -> tuple:
    """The i-th of n settings of one method: its colour from lighter (first) to full (last)."""
    rgb = np.array(to_rgb(base))
    return tuple(rgb + (1 - rgb) * (0.45 * (1 - i / (n - 1)) if n > 1 else 0.0))


def _outside_legend(ax, **kwargs) -> None:
    """The legend to the right of the panel, never over the data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, **kwargs)


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
    return (f"{name} (%)", 100.0) if is_error(metric) else (name, 1.0)


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


def _families(summary: pd.DataFrame, groups: list[str], x: str = RHO) -> list[tuple[str, pd.DataFrame]]:
    """The rows grouped by every group column but the plot's x (rho, or the switch point), labelled."""
    family = [c for c in groups if c != x]
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


def _family_looks(families: list[tuple[str, pd.DataFrame]]) -> list[tuple]:
    """(colour, marker) per family: the method's colour, shaded when a method has several families
    (random at several sigma), and a marker of its own."""
    methods = [_method_of(members.iloc[0]) for _, members in families]
    colors = method_colors(m for m in methods if m)
    looks = []
    for j, method in enumerate(methods):
        same = [k for k, m in enumerate(methods) if m == method] if method else [j]
        base = colors.get(method, color(j)) if method else color(j)
        looks.append((shade(base, same.index(j), len(same)), MARKERS[j % len(MARKERS)]))
    return looks


def sweep_vs_rho(summary: pd.DataFrame, info: dict, path: str | Path) -> Path | None:
    """The metric against rho, one line per method (family), mean over seeds with its interval (the
    range of 2-3 seeds, else the 95% CI); each method in its colour, families nudged apart along the
    axis so that points at one rho stay visible; a method without rho (ERM) is a dashed horizontal
    line with its interval as a band; a star marks a best rho whose interval lies below every other
    rho's. The legend sits to the right of the axes."""
    if RHO not in info["groups"] or (pd.to_numeric(summary[RHO], errors="coerce") > 0).sum() < 2:
        return None
    families = _families(summary, info["groups"])
    if len(families) > 4 and all(len(members) == 1 for _, members in families):
        return _trials_vs_rho(summary, info, path)
    what, scale = _what(info["metric"])
    fig = Figure(figsize=(7.6, 4.2), layout="constrained")
    ax = fig.subplots()
    looks = _family_looks(families)
    for j, ((label, members), (col, marker)) in enumerate(zip(families, looks)):
        members = members.sort_values(RHO)
        label = f"{label} ({_seeds(members)})"
        positive = pd.to_numeric(members[RHO], errors="coerce") > 0
        for _, row in members[~positive].iterrows():  # no rho (ERM) or rho = 0: a baseline across the axis
            _across(ax, row, label if pd.isna(row[RHO]) else f"{label}, rho=0", col, scale)
        members = members[positive]
        if members.empty:
            continue
        # a log axis: a factor, the same width at every rho; at most +-0.04 decades (+-10%) for all families
        nudge = 10 ** (min(0.012, 0.08 / len(families)) * (j - (len(families) - 1) / 2))
        x = members[RHO].astype(float).to_numpy() * nudge
        y = scale * members["mean"].to_numpy()
        err = np.nan_to_num(
            scale * np.abs(np.vstack([members["mean"] - members["ci_low"], members["ci_high"] - members["mean"]]))
        )
        ax.errorbar(x, y, yerr=err, marker=marker, ms=5, capsize=3, color=col, label=label, alpha=0.9)
        for xi, (_, r) in zip(x, members.iterrows()):
            if r["separated"]:
                ax.plot([xi], [scale * r["mean"]], marker="*", ms=14, color=col, mec="black", zorder=5, ls="none")
    rho_axis(ax, pd.to_numeric(summary[RHO], errors="coerce").dropna())
    _log_if_wide(ax, scale * summary["mean"])
    ax.set_ylabel(what)
    ax.grid(alpha=0.3)
    _outside_legend(ax)
    star = (
        "\nstar: the best rho of a method, its interval below every other rho's" if summary["separated"].any() else ""
    )
    interval = interval_name(summary["n_seeds"])
    bars = f", bars: {interval} over seeds" if interval else ""
    # The figure's title, not the axes': a wide legend narrows the axes, and a title centred on them
    # would run off the figure's left edge.
    fig.suptitle(f"{what.capitalize()} against rho: mean over seeds{bars}{star}", fontsize=9)
    return _save(fig, path)


def _across(ax, row: pd.Series, label: str, col, scale: float) -> None:
    """A row without the plot's x (ERM against rho, a method never switched against the switch
    point): a dashed line across the axes at its mean, its interval a band; ERM in the reference grey."""
    col = REFERENCE_COLOR if _method_of(row) == REFERENCE else col
    ax.axhline(scale * row["mean"], ls="--", lw=1.4, color=col, label=label, zorder=1)
    if np.isfinite(row["ci_low"]):
        ax.axhspan(scale * row["ci_low"], scale * row["ci_high"], color=col, alpha=0.12, lw=0, zorder=0)


MAX_ACROSS = 3  # unswitched rows drawn across a switch plot besides ERM: a whole regime's grid would bury it


def sweep_vs_switch(summary: pd.DataFrame, info: dict, path: str | Path) -> Path | None:
    """The metric against the switch point (paper Fig. 8): the share of epochs trained before a
    method switch (method.switch_at), one line per switching method and setting, mean over seeds
    with its interval, in the colours and markers of sweep_vs_rho's families; the unswitched rows
    (ERM, and the methods run throughout when there are at most MAX_ACROSS of them) as dashed lines
    across. None unless some setting ran at two switch points."""
    if SWITCH_AT not in info["groups"]:
        return None
    unswitched = summary[SWITCH_AT].isna()
    if unswitched.sum() > MAX_ACROSS + 1:
        summary = summary[~unswitched | (summary.apply(_method_of, axis=1) == REFERENCE)]
    families = _families(summary, info["groups"], x=SWITCH_AT)
    if not any(members[SWITCH_AT].notna().sum() > 1 for _, members in families):
        return None
    what, scale = _what(info["metric"])
    fig = Figure(figsize=(7.6, 4.2), layout="constrained")
    ax = fig.subplots()
    for (label, members), (col, marker) in zip(families, _family_looks(families)):
        label = f"{label} ({_seeds(members)})"
        for _, row in members[members[SWITCH_AT].isna()].iterrows():
            _across(ax, row, label, col, scale)
        members = members[members[SWITCH_AT].notna()].sort_values(SWITCH_AT)
        if members.empty:
            continue
        err = np.nan_to_num(
            scale * np.abs(np.vstack([members["mean"] - members["ci_low"], members["ci_high"] - members["mean"]]))
        )
        x = 100 * members[SWITCH_AT].astype(float).to_numpy()
        ax.errorbar(
            x, scale * members["mean"].to_numpy(), yerr=err, marker=marker, ms=5, capsize=3, color=col, label=label
        )
    points = sorted({100 * float(v) for v in summary[SWITCH_AT].dropna()})
    ax.set_xticks(points, [f"{p:g}" for p in points])
    ax.set_xlim(0, 100)
    ax.set_xlabel("epochs before the switch (%)")
    ax.set_ylabel(what)
    ax.grid(alpha=0.3)
    _outside_legend(ax)
    interval = interval_name(summary["n_seeds"])
    bars = f", bars: {interval} over seeds" if interval else ""
    fig.suptitle(f"{what.capitalize()} against the switch point: mean over seeds{bars}", fontsize=9)  # as sweep_vs_rho
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
    """The metric of every table row (paper Fig. 1 style): mean over seeds with its interval (the
    range of 2-3 seeds, else the 95% CI), each seed as a dot, each method in its colour (ERM the grey
    reference). For sweeps whose rows are not a curve against rho (sweep_vs_rho draws those)."""
    if len(summary) < 2:
        return None
    what, scale = _what(info["metric"])
    metric = runs.set_index("job")[info["metric"]]
    fig = Figure(figsize=(6.4, 1.4 + 0.42 * len(summary)), layout="constrained")
    ax = fig.subplots()
    colors = method_colors(m for _, row in summary.iterrows() if (m := _method_of(row)))
    for y, (i, row) in enumerate(summary.iloc[::-1].iterrows()):
        col = colors.get(_method_of(row), color(i))
        seeds = scale * metric.reindex(row["jobs"]).dropna().to_numpy()
        ax.plot(
            seeds, np.full(len(seeds), y), ls="none", marker=".", ms=6, color=col, alpha=0.5, zorder=4
        )  # above the whiskers
        err = np.nan_to_num(scale * np.abs([[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]]))
        ax.errorbar([scale * row["mean"]], [y], xerr=err, marker="o", ms=6, capsize=4, color=col)
    names = [
        f"{_family_label(row, info['groups'])} ({_seeds(summary.loc[[i]])})" for i, row in summary.iloc[::-1].iterrows()
    ]
    ax.set_yticks(range(len(summary)), names, fontsize=8)
    ax.set_xlabel(what)
    ax.grid(alpha=0.3, axis="x")
    interval = interval_name(summary["n_seeds"])
    bars = f", bars: {interval} over seeds" if interval else ""
    ax.set_title(f"{what.capitalize()}: mean over seeds{bars}, dots: seeds", fontsize=9)
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


def _method_of(row: pd.Series) -> str | None:
    value = row.get(KEY + "method")
    return None if value is None or pd.isna(value) else str(value)


def sweep_curves(
    summary: pd.DataFrame, info: dict, runs: pd.DataFrame, histories: dict, path: str | Path
) -> Path | None:
    """Test and train metric over epochs or steps, mean over seeds with a band (their range for 2-3
    seeds, else the 95% CI); label-noise runs add train/noisy_fit and train/clean_error. A row of
    panels per method with a line per setting (rho, sigma, ...: shades of the method's colour, line
    styles and markers), a column per metric, ERM as a dashed grey reference in every row (and no
    row of its own); when every method has a single row, one panel per metric with a line per method.
    Each metric's panels share the y-axis; legends sit to the right of the panels."""
    test_key, train_key = (TEST_ERROR, TRAIN_ERROR) if is_error(info["metric"]) else (TEST_LOSS, TRAIN_LOSS)
    _, scale = _what(info["metric"])
    # label-noise runs also log how they fit the flipped and the clean labels (paper Fig. 12)
    extra_keys = (TRAIN_NOISY_FIT, TRAIN_CLEAN_ERROR) if scale == 100 else ()
    seeds = {r.job: r.seed if pd.notna(r.seed) else r.job for r in runs.itertuples()}
    jobs = [j for js in summary["jobs"] for j in js]
    keys = [
        k
        for k in (test_key, train_key, *extra_keys)
        if any(h.get(k) is not None for j in jobs for h in histories.get(j, []))
    ]
    if not keys:
        return None
    by_step = not any("epoch" in h for j in jobs for h in histories.get(j, []))
    colors = method_colors(m for _, row in summary.iterrows() if (m := _method_of(row)))
    panels = _curve_panels(summary, info["groups"])
    single = all(len(m) == 1 for _, m, _ in panels)
    ref = [i for i, row in summary.iterrows() if _method_of(row) == REFERENCE]
    reference = ref[0] if len(ref) == 1 and not single else None
    drawn = [p for p in panels if p[0] != REFERENCE] if reference is not None and len(panels) > 1 else panels
    counts = []

    def draw(ax, row, key, label, col, style, marker, k, z=2) -> None:
        frame = _history_frame(histories, row["jobs"], seeds, key)
        if by_step:
            frame = frame[frame.index > 0]  # log x: start at the first logged step, no line from 0
        if frame.empty:
            return
        counts.append(frame.shape[1])
        x, mean = frame.index.to_numpy(), scale * frame.mean(axis=1).to_numpy()
        every = max(1, len(x) // 8)
        ax.plot(
            x,
            mean,
            color=col,
            ls=style,
            lw=1.4,
            alpha=0.9,
            marker=marker,
            ms=4,
            markevery=(k % every, every),  # each line's markers start elsewhere: overlapping lines stay visible
            label=f"{label} ({frame.shape[1]} seed{'s' * (frame.shape[1] > 1)})",
            zorder=z,
        )
        low, high = _band(frame)
        if np.isfinite(low).any():
            ax.fill_between(x, scale * low, scale * high, color=col, alpha=0.15, lw=0)

    def style_axis(ax, key, bottom: bool) -> None:
        ax.set_ylabel(CURVE_NAMES.get(key, key.replace("/", " ")) + (" (%)" if scale == 100 else ""))
        ax.grid(alpha=0.3)
        if bottom:
            ax.set_xlabel("step (log scale)" if by_step else "epoch")
        if by_step:
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if scale == 1:
            ax.set_yscale("log")  # losses: decades, as in the paper's Fig. 6

    if single:  # one panel per metric: side by side, or a 2-column grid for more than two; one legend
        cols = 2 if len(keys) > 2 else len(keys)
        rows = -(-len(keys) // cols)
        fig = Figure(figsize=(4.6 * cols + 2.4, 3.4 * rows + 0.4), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False, sharex=True).ravel()
        for ax in axes[len(keys) :]:
            ax.set_visible(False)
        families = _families(summary, info["groups"])
        for r, key in enumerate(keys):
            for i, (label, members) in enumerate(families):
                row = members.iloc[0]
                method = _method_of(row)
                col = colors.get(method, color(i)) if method else color(i)
                style = "--" if method == REFERENCE else LINESTYLES[i % len(LINESTYLES)]
                draw(axes[r], row, key, label, col, style, MARKERS[i % len(MARKERS)], i)
            style_axis(axes[r], key, bottom=True)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    else:  # a row per method, a column per metric
        fig = Figure(figsize=(4.4 * len(keys) + 2.6, 2.7 * len(drawn) + 0.5), layout="constrained")
        axes = fig.subplots(len(drawn), len(keys), squeeze=False, sharey="col", sharex=True)
        for r, (title, members, line_keys) in enumerate(drawn):
            base = colors.get(title, color(r))
            for c, key in enumerate(keys):
                ax = axes[r][c]
                if reference is not None:
                    # dashed, above the method's lines: where they coincide both stay visible
                    ref_row = summary.loc[reference]
                    draw(ax, ref_row, key, f"{REFERENCE} (reference)", REFERENCE_COLOR, "--", None, 0, z=3)
                for i, (_, row) in enumerate(members.iterrows()):
                    label = _family_label(row, line_keys, drop="method.") if line_keys else title
                    n = len(members)
                    look = (shade(base, i, n), LINESTYLES[i % len(LINESTYLES)], MARKERS[i % len(MARKERS)])
                    draw(ax, row, key, label, *look, i + 1)
                style_axis(ax, key, bottom=r == len(drawn) - 1)
                if c == 0:
                    ax.set_title(title, fontsize=10, loc="left", fontweight="bold")
            _outside_legend(axes[r][-1], title=title, title_fontsize=8)
    # the curves are the logged values, whichever the table's metric (best, at the best val epoch, ...)
    what = "test error (%)" if scale == 100 else "test loss"
    quantity = what.replace("test ", "test and train ", 1) if len(keys) >= 2 else what
    interval = interval_name(counts)
    fig.suptitle(
        f"{quantity.capitalize()} over {'steps' if by_step else 'epochs'}: mean over seeds"
        + (f", band: {interval} over seeds" if interval else ""),
        fontsize=10,
    )
    return _save(fig, path)


# -- analysis -------------------------------------------------------------------------------------


def sharpness(records: Sequence[dict], path: str | Path) -> Path:
    """m-sharpness against rho (Fig. 2 style): the loss increase at the (approximate) worst point of
    radius rho, mean over batches with the per-batch range as a band; one panel per m, one line per
    checkpoint label and BN mode (checkpoints sharing a label: their mean, with their range (2-3) or
    95% CI (more) as the band). Each label keeps its colour and marker in every panel (ERM the grey
    reference), the BN mode its line style; the curves are nudged apart along rho so that coinciding
    ones stay visible. A second row shows the suboptimality factor, steps-step over 1-step value
    (Fig. 3), when computed. The legend sits to the right of the panels."""
    ms = sorted({r["m"] for r in records})
    curves = list(dict.fromkeys((r["checkpoint"], r["bn"]) for r in records))
    checkpoints = list(dict.fromkeys(label for label, _ in curves))  # one colour and marker each
    colors = method_colors(REFERENCE if str(c).lower().startswith(REFERENCE) else c for c in checkpoints)
    with_factor = any(r.get("suboptimality_factor") is not None for r in records)
    show_bn = len({bn for _, bn in curves}) > 1
    rows = 2 if with_factor else 1
    fig = Figure(figsize=(4.2 * len(ms) + 2.8, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, len(ms), squeeze=False, sharey="row")
    styles = {"train": "-", "eval": "--"}
    repeats_seen = []
    for col, m in enumerate(ms):
        for k, (label, bn) in enumerate(curves):
            points = pd.DataFrame([r for r in records if r["m"] == m and r["checkpoint"] == label and r["bn"] == bn])
            if points.empty:
                continue
            repeats = int(points.groupby("rho").size().max())  # checkpoints sharing the label (seeds)
            repeats_seen.append(repeats)
            name = (f"{label}, BN {bn}" if show_bn else label) + (f" ({repeats} checkpoints)" if repeats > 1 else "")
            i = checkpoints.index(label)
            c = colors[REFERENCE if str(label).lower().startswith(REFERENCE) else label]
            style = dict(color=c, linestyle=styles.get(bn, "-"), marker=MARKERS[i % len(MARKERS)], markersize=5)
            style.update(alpha=0.85, label=name, markerfacecolor="white" if bn == "eval" else c)  # eval: open
            by_rho = points.sort_values("rho").groupby("rho", sort=True)
            nudge = 10 ** (0.01 * (k - (len(curves) - 1) / 2))  # coinciding curves side by side, not on top
            rhos = [r * nudge for r in by_rho.groups]
            axes[0][col].plot(rhos, by_rho["sharpness"].mean(), **style)
            if repeats > 1:  # band: over the checkpoints
                spread = [bootstrap_ci(g["sharpness"].to_numpy()) or (np.nan, np.nan) for _, g in by_rho]
            else:  # band: the per-batch range of the one checkpoint
                spread = [
                    (min(g["per_batch"].iloc[0]), max(g["per_batch"].iloc[0]))
                    if g["per_batch"].iloc[0]
                    else (np.nan, np.nan)
                    for _, g in by_rho
                ]
            axes[0][col].fill_between(
                rhos, [lo for lo, _ in spread], [hi for _, hi in spread], color=c, alpha=0.12, lw=0
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
        axes[0][col].grid(alpha=0.3)
        if with_factor:
            rho_axis(axes[1][col], [r["rho"] for r in records])
            axes[1][col].axhline(1.0, color="0.7", linewidth=0.8, zorder=0)
            axes[1][col].set(title=f"suboptimality factor, {steps} steps vs 1", ylabel="factor")
            axes[1][col].grid(alpha=0.3)
    over = interval_name([n for n in repeats_seen if n > 1])
    title = (
        f"line: mean over batches and checkpoints\nband: {over} over checkpoints (one: per-batch range)"
        if over
        else "line: mean over batches\nband: per-batch range"
    )
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small", title=title, title_fontsize="small")
    return _save(fig, path)


def sharpness_over_training(records: Sequence[dict], epochs: dict[str, int], path: str | Path) -> Path:
    """m-sharpness at one rho against the epoch of each checkpoint of one run (Fig. 19 style): one line
    per BatchNorm mode (train: batch statistics, solid; eval: running statistics, dashed), the
    per-batch range as a band; one panel per m. `epochs`: {checkpoint label: epochs done}."""
    ms = sorted({r["m"] for r in records})
    (rho,) = {r["rho"] for r in records}
    fig = Figure(figsize=(4.6 * len(ms) + 1.6, 3.4), layout="constrained")
    axes = fig.subplots(1, len(ms), squeeze=False)[0]
    for ax, m in zip(axes, ms):
        for k, bn in enumerate(dict.fromkeys(r["bn"] for r in records)):
            points = sorted((epochs[r["checkpoint"]], r) for r in records if r["m"] == m and r["bn"] == bn)
            x = [e for e, _ in points]
            style = dict(color=color(k), linestyle="-" if bn == "train" else "--", marker=MARKERS[k], markersize=5)
            ax.plot(x, [r["sharpness"] for _, r in points], label=f"BN {bn}", **style)
            low = [min(r["per_batch"]) for _, r in points]
            high = [max(r["per_batch"]) for _, r in points]
            ax.fill_between(x, low, high, color=color(k), alpha=0.12, lw=0)
        steps = records[0]["ascent_steps"]
        ax.set(
            title=f"{m}-sharpness at rho {rho} ({steps} ascent steps)",
            xlabel="epoch",
            ylabel="loss increase L(w + e) - L(w)",
        )
        ax.grid(alpha=0.3)
    fig.legend(
        *axes[-1].get_legend_handles_labels(),
        loc="outside right upper",
        fontsize="small",
        title="line: mean over batches\nband: per-batch range",
        title_fontsize="small",
    )
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
