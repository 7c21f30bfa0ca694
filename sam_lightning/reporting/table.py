"""Runs grouped into table rows with pandas: one row per group of runs that differ only in the seed.

The group columns are the overrides that vary across the finished runs (a run without a key, e.g.
a method that takes no rho, has NaN there); overrides shared by every run are printed once above
the table. Seeds are the unit of replication: runs of one group that share a seed are averaged
first, so duplicates never narrow the interval. Intervals are scipy's percentile bootstrap of the
mean over seeds (seaborn's default error bar). The best rho of a method is the row with the lowest
mean among rows that differ only in `method.rho`; it is starred when its interval lies below every
other rho's interval.

Runs with a validation split (data.val_fraction > 0: results.json holds final_val_error, ...)
are chosen on it: the table shows the validation metric beside the test metric and the best rho is
the lowest mean validation error, the test set only reported. Only when no run has a split does the
test metric choose. The table says which in one line. Jobs with status `skipped` (ERM at a second
rho of a grid: the same run as at the first, see sam_lightning.run.duplicates) are left out and counted below.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sam_lightning.reporting.collect import KEY, RHO
from sam_lightning.reporting.stats import bootstrap_ci, format_mean_ci, interval_name, interval_note
from sam_lightning.run.results import AT_BEST_VAL, is_error

METRICS = {"final": "final_test_error", "best": "best_test_error", "loss": "final_test_loss"}
# The validation metric that chooses rho for a test metric, when the runs have a validation split.
VAL_OF = {
    "final_test_error": "final_val_error",
    "final_test_loss": "final_val_loss",
    "best_test_error": "best_val_error",
}
SKIPPED = "skipped"
# The training errors, each named for what it measures: train/error is a running average over the
# epoch's augmented batches in training mode (BatchNorm on batch statistics), at w or, for nsam and
# random, at the perturbed weights; train_eval/error (data.eval_train) is the error on the unaugmented
# training images with their true labels, in eval mode, measured with the test set. (A train loss
# keeps its plain name: the theory runs' full-batch loss is neither augmented nor a running average.)
TRAIN_EVAL = "final_train_eval_error"
COLUMN_NAMES = {
    "final_train_error": "train error % (augmented, during the epoch)",
    TRAIN_EVAL: "train error % (eval mode)",
}
REPEAT_NOTE = "seeds run more than once (their runs averaged, counted as one seed; the folders hold both):"
BEST_NOTE = (
    "best rho: * the lowest mean among rows that differ only in rho, with an interval below all the "
    "others'; (*) the lowest mean, intervals overlapping."
)


def resolve_metric(runs: pd.DataFrame, metric: str) -> str:
    """final / best / loss, a results.json key, or auto: test error when the runs have one, else test loss."""
    if metric == "auto":
        finished = runs[runs["status"] == "finished"] if "status" in runs else runs
        has_error = "final_test_error" in finished and finished["final_test_error"].notna().any()
        return "final_test_error" if has_error or "final_test_loss" not in finished else "final_test_loss"
    return METRICS.get(metric, metric)


def resolve_metrics(runs: pd.DataFrame, metric: str) -> tuple[str, str | None]:
    """(the test metric the table reports, the validation metric that chooses rho or None when no
    finished run has a validation split). With a split, `best` reports the test error at the epoch of
    lowest validation error (early stopping chosen on validation), not the lowest test error over epochs;
    the key itself (`best_test_error`) reports that lowest test error, rho still chosen on validation."""
    test = resolve_metric(runs, metric)
    val = VAL_OF.get(test)
    finished = runs[runs["status"] == "finished"] if "status" in runs else runs
    if val is None or val not in finished or finished[val].isna().all():
        return test, None
    return (AT_BEST_VAL if metric == "best" else test), val


def _train_metric(metric: str) -> str:
    return "final_train_loss" if metric.endswith("loss") else "final_train_error"


def group_columns(finished: pd.DataFrame) -> tuple[list[str], dict]:
    """The key columns that vary across finished runs, and {key: value} of those shared by all."""
    keys = [c for c in finished.columns if c.startswith(KEY)]
    varying, common = [], {}
    for k in keys:
        values = finished[k]
        if values.isna().any() and values.notna().any() or values.dropna().nunique() > 1:
            varying.append(k)
        elif values.notna().all() and len(values):
            common[k[len(KEY) :]] = values.iloc[0]
    return varying, common


def aggregate(runs: pd.DataFrame, metric: str = "auto") -> tuple[pd.DataFrame, dict]:
    """One row per group: the varying keys, seeds, mean with CI, train metric, excluded jobs, best rho.
    Returns (summary, info) where info holds the metric, the common overrides and the group columns."""
    metric, val = resolve_metrics(runs, metric)
    train = _train_metric(metric)
    skipped = runs["status"] == SKIPPED if "status" in runs else pd.Series(False, index=runs.index)
    runs = runs[~skipped].copy()
    train_eval = TRAIN_EVAL if is_error(metric) and TRAIN_EVAL in runs and runs[TRAIN_EVAL].notna().any() else None
    numbers = [metric, train, *([val] if val else []), *([train_eval] if train_eval else [])]
    for col in (*numbers, "seed"):
        if col not in runs:
            runs[col] = np.nan
    done = (runs["status"] == "finished") & runs[metric].notna()
    runs.loc[(runs["status"] == "finished") & runs[metric].isna(), ["status", "reason"]] = [
        "no-metric",
        f"finished without {metric}",
    ]
    finished = runs[done].copy()
    groups, common = group_columns(finished)
    info = {
        "metric": metric,
        "val_metric": val,
        "chosen_on": val or metric,
        "train_metric": train,
        "train_eval_metric": train_eval,
        "common": common,
        "groups": groups,
        "skipped": int(skipped.sum()),
        "no_metric": runs.loc[runs["status"] == "no-metric", "job"].tolist(),
    }
    if finished.empty:
        return pd.DataFrame(), info
    by = groups or ["_all"]
    finished["_all"] = 0
    finished["_seed"] = finished["seed"].astype(object).where(finished["seed"].notna(), finished["job"])
    by_seed = finished.groupby([*by, "_seed"], dropna=False, sort=False)
    per_seed = by_seed[numbers].mean()
    per_seed["_runs"] = by_seed.size()
    per_seed["_spread"] = by_seed[metric].max() - by_seed[metric].min()
    per_seed = per_seed.reset_index()
    grouped = per_seed.groupby(by, dropna=False, sort=False)
    summary = grouped.agg(
        n_seeds=("_seed", "size"),
        seeds=("_seed", lambda s: " ".join(map(str, s))),
        repeated_seeds=("_seed", lambda s: _repeats(per_seed.loc[s.index], metric)),
        mean=(metric, "mean"),
        train_mean=(train, "mean"),
    )
    if train_eval:
        summary["train_eval_mean"] = grouped[train_eval].mean()
    for prefix, col in (("", metric), *([("val_", val)] if val else [])):
        if prefix:
            summary[prefix + "mean"] = grouped[col].mean()
        cis = grouped[col].agg(lambda v: bootstrap_ci(v.dropna().to_numpy()) or (math.nan, math.nan))
        summary[prefix + "ci_low"] = [c[0] for c in cis]
        summary[prefix + "ci_high"] = [c[1] for c in cis]
    jobs = finished.groupby(by, dropna=False, sort=False)["job"]
    summary["n_runs"] = jobs.size()
    summary["jobs"] = jobs.agg(list)
    summary = summary.reset_index()
    summary["excluded"] = _excluded_counts(runs[~done], summary, groups, common)
    _mark_best(summary, groups, prefix="val_" if val else "")
    summary = summary.drop(columns=["_all"], errors="ignore")
    order = [c for c in groups if c != RHO] + ([RHO] if RHO in groups else [])
    if order:
        summary = summary.sort_values(order, na_position="first", kind="stable", key=_sortable).reset_index(drop=True)
    return summary, info


def _repeats(seeds: pd.DataFrame, metric: str) -> str:
    """The seeds of one row run more than once, with how far their runs end apart in the reported
    metric: `0 (2 runs, 1.43 points apart)`. Such runs are averaged into one seed; when they differ (e.g. two code versions), the row
    hides it, so the report names them."""
    apart = (lambda d: f"{100 * d:.2f} points apart") if is_error(metric) else (lambda d: f"{d:.3g} apart")
    return ", ".join(
        f"{r['_seed']} ({r['_runs']} runs, {apart(r['_spread']) if r['_spread'] else 'identical'})"
        for _, r in seeds.sort_values("_seed", key=_sortable, kind="stable").iterrows()
        if r["_runs"] > 1
    )


def _sortable(col: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(col, errors="coerce")
    return numbers if numbers.notna().sum() == col.notna().sum() else col.astype(str)


def _excluded_counts(unfinished: pd.DataFrame, summary: pd.DataFrame, groups: list[str], common: dict) -> list[str]:
    """Per row: how many jobs of that group did not finish, by status (e.g. `1 diverged`)."""
    counts = [dict() for _ in range(len(summary))]
    for _, job in unfinished.iterrows():
        others = {
            c[len(KEY) :]: job[c] for c in job.index if c.startswith(KEY) and c not in groups and pd.notna(job[c])
        }
        if any(common.get(k) != v for k, v in others.items()):
            continue  # a job outside every group (e.g. with a setting no finished run has)
        for i, row in summary.iterrows():
            if all(_same(job.get(c), row[c]) for c in groups):
                counts[i][job["status"]] = counts[i].get(job["status"], 0) + 1
                break
    return [", ".join(f"{n} {s}" for s, n in c.items()) for c in counts]


def _same(a, b) -> bool:
    return (pd.isna(a) and pd.isna(b)) if (pd.isna(a) or pd.isna(b)) else a == b


def _mark_best(summary: pd.DataFrame, groups: list[str], prefix: str = "") -> None:
    """best/separated on the `<prefix>mean` column and its interval: validation (prefix val_) when the
    runs have a split, else the reported metric. Rows without that number are not ranked."""
    summary["best"] = False
    summary["separated"] = False
    if RHO not in groups:
        return
    mean, low, high = prefix + "mean", prefix + "ci_low", prefix + "ci_high"
    family = [c for c in groups if c != RHO]
    with_rho = summary[summary[RHO].notna() & summary[mean].notna()]
    for _, members in with_rho.groupby(family, dropna=False, sort=False) if family else [(None, with_rho)]:
        if members[RHO].nunique() < 2:
            continue
        # A tie goes to the smallest rho: the weaker perturbation, the one nearer ERM.
        best = members.sort_values(RHO, kind="stable")[mean].idxmin()
        others = members.drop(index=best)
        summary.loc[best, "best"] = True
        # A row without an interval (one seed) counts with its mean; the best row needs its own interval.
        summary.loc[best, "separated"] = bool(summary.loc[best, high] < others[low].fillna(others[mean]).min())


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _what(metric: str) -> str:
    """final_val_error -> 'val error %', test_error_at_best_val -> 'test error at best val %'."""
    return metric.removeprefix("final_").replace("_", " ") + (" %" if is_error(metric) else "")


def trial_number(jobs) -> int | None:
    """k of an optimizing sweeper's one-job row (its folder trial_<k>, conf/train/hparams_search), else None."""
    if not isinstance(jobs, list) or len(jobs) != 1:
        return None
    match = re.search(r"(?:^|/)trial_(\d+)$", str(jobs[0]))
    return int(match.group(1)) if match else None


def row_name(keys, groups: list[str]) -> str:
    """`method=sam method.rho=0.05`: a row by its group keys (a summary row or {key: value}), the keys
    it lacks left out; `all runs` when nothing varies."""
    named = [f"{g[len(KEY) :]}={_cell(keys[g])}" for g in groups if not pd.isna(keys[g])]
    return " ".join(named) or "all runs"


def display_frame(summary: pd.DataFrame, info: dict) -> pd.DataFrame:
    """The table as text cells: percent for errors, 3 significant digits for losses. With a
    validation split, the validation column comes before the test column."""
    metric, train = info["metric"], info["train_metric"]
    pct = is_error(metric)
    scale, spec = (100.0, ".2f") if pct else (1.0, ".3g")
    out = pd.DataFrame({k[len(KEY) :]: summary[k].map(_cell) for k in info["groups"]})
    trials = [trial_number(jobs) for jobs in summary["jobs"]] if "jobs" in summary else []
    if trials and all(t is not None for t in trials):  # an Optuna study: each row is one trial
        out.insert(0, "trial", [str(t) for t in trials])
    out["seeds"] = summary["n_seeds"].astype(str)
    interval = interval_name(summary["n_seeds"])
    for prefix, col in ((("val_", info["val_metric"]),) if info.get("val_metric") else ()) + (("", metric),):
        out[_what(col) + (f" ({interval})" if interval else "")] = [
            format_mean_ci(r[prefix + "mean"], r[prefix + "ci_low"], r[prefix + "ci_high"], scale, spec)
            for _, r in summary.iterrows()
        ]
    train_scale, train_spec = (100.0, ".2f") if is_error(train) else (1.0, ".3g")  # its own kind, not the metric's
    out[COLUMN_NAMES.get(train, _what(train))] = [
        format_mean_ci(v, scale=train_scale, spec=train_spec) for v in summary["train_mean"]
    ]
    if info.get("train_eval_metric"):
        out[COLUMN_NAMES[TRAIN_EVAL]] = [format_mean_ci(v, scale=100.0, spec=".2f") for v in summary["train_eval_mean"]]
    if summary["excluded"].astype(bool).any():
        out["not finished"] = summary["excluded"]
    if summary["best"].any():
        out["best rho"] = ["*" if s else "(*)" if b else "" for b, s in zip(summary["best"], summary["separated"])]
    return out


def problems(runs: pd.DataFrame) -> pd.DataFrame:
    """The jobs listed under the table: every one not finished, except the skipped (only counted)."""
    return runs[~runs["status"].isin(["finished", SKIPPED])][["job", "status", "reason"]] if len(runs) else runs


def chosen_line(info: dict) -> str:
    """One line: which split chose the best rho."""
    chosen, metric = info.get("chosen_on") or info["metric"], info["metric"]
    if info.get("val_metric"):
        return (
            f"best rho chosen on validation ({_what(chosen).removesuffix(' %')}, mean over seeds; data.val_fraction "
            f"held out of training); the test column ({_what(metric).removesuffix(' %')}) is reported, not used to choose."
        )
    if "_test_" in chosen:
        return f"best rho chosen on the test set ({_what(chosen).removesuffix(' %')}): no run has a validation split (data.val_fraction)."
    return f"best rho chosen on {_what(chosen).removesuffix(' %')}."


def report(
    summary: pd.DataFrame,
    info: dict,
    runs: pd.DataFrame,
    sources: list[str],
    markdown: bool = False,
    images: Sequence[str] = (),
) -> str:
    """The console (tabulate's `simple`) or Markdown report: sources, common overrides, table, notes, excluded jobs."""
    code = (lambda s: f"`{s}`") if markdown else str
    parts = (["# Sweep summary", ""] if markdown else []) + [f"sweep: {', '.join(code(s) for s in sources)}"]
    if info["common"]:
        parts += [""] * markdown + [
            f"common overrides: {code(' '.join(f'{k}={v}' for k, v in info['common'].items()))}"
        ]
    if len(summary):
        parts += [
            "",
            display_frame(summary, info).to_markdown(
                index=False, tablefmt="pipe" if markdown else "simple", disable_numparse=True
            ),
            "",
            interval_note(summary["n_seeds"]) + (" " + BEST_NOTE if summary["best"].any() else ""),
        ]
        if summary["best"].any():
            parts += [""] * markdown + [chosen_line(info)]
        if summary["repeated_seeds"].astype(bool).any():
            parts += ["", REPEAT_NOTE]
            parts += [
                f"{'- ' if markdown else '  '}{row_name(r, info['groups'])}: seed {r['repeated_seeds']}"
                for _, r in summary.iterrows()
                if r["repeated_seeds"]
            ]
    bad = problems(runs)
    if len(bad):
        parts += ["", f"excluded ({len(bad)} job(s) failed or unfinished):"]
        parts += [f"{'- ' if markdown else '  '}{code(r.job)}: {r.status}: {r.reason}" for r in bad.itertuples()]
    if info.get("no_metric"):
        parts += [
            "",
            f"not in the table ({len(info['no_metric'])} finished job(s) without {info['metric']}"
            f"{', e.g. no validation split' if info['metric'] == AT_BEST_VAL else ''}): "
            + ", ".join(code(j) for j in info["no_metric"]),
        ]
    if info.get("skipped"):
        parts += [
            "",
            f"{info['skipped']} job(s) skipped: each repeats another job of the sweep (ERM at a second rho); "
            "its results.json names which.",
        ]
    if markdown and images:
        parts += [""] + [f"![{i.rsplit('/', 1)[-1][:-4]}]({i.rsplit('/', 1)[-1]})" for i in images]
    return "\n".join(parts) + ("\n" if markdown else "")


def summary_csv(summary: pd.DataFrame, info: dict) -> pd.DataFrame:
    """summary.csv: group keys by name, numbers as fractions (as in results.json)."""
    out = summary.rename(columns={k: k[len(KEY) :] for k in info["groups"]})
    out.insert(0, "metric", info["metric"])
    out.insert(1, "chosen_on", info.get("chosen_on") or info["metric"])
    if info.get("val_metric"):
        out.insert(2, "val_metric", info["val_metric"])
    out["best_rho"] = out["best"].astype(int)
    return out.drop(columns=["best", "jobs"])
