"""Paired differences to a baseline: each table row minus the baseline method's run of the same seed.

    python sweep.py <dir> --paired seed --baseline erm

When the training subset is fixed across seeds (the laptop presets fix `data.seed`), runs of two
methods at one seed share their training images, validation split and initial weights, so the
difference per seed leaves out what the seeds share. For every row of the table other than the
baseline's, the paired table shows that difference per seed, its mean with the 95% percentile
bootstrap interval, which with 2-3 seeds is their range (`sam_lightning.reporting.stats`, named as in the
main table) and how many seeds are below the baseline. The number is the main table's metric (with a validation split and `--metric best`: the
test error at the best validation epoch).

A row is paired with the baseline row that has the same value of every key the two share; keys
that only one of them has (`method.rho`, which ERM does not take) and the keys that name the
method itself (`method`, `method.m`, ...) are not matched. `--paired` may name another key than
the seed (any `key:` column of the runs): rows are then formed without that key and paired on it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sam_lightning.reporting.collect import KEY, equals_setting
from sam_lightning.reporting.stats import bootstrap_ci, format_mean_ci, interval_name, interval_note
from sam_lightning.reporting.table import RHO, _cell, _sortable, _what, is_error, row_name
from sam_lightning.settings.config import ConfigError

# Overrides that name the method (naming.method_label reads them): the baseline differs in them by definition.
LABEL_KEYS = frozenset({"method", "method.name", "method._target_", "method.m", "method.normalize"})
COLUMNS = ("baseline_row", "diffs", "n", "mean", "ci_low", "ci_high", "below", "unpaired", "note")


def unit_column(on: str) -> str:
    """The runs' column a `--paired` key names: seed, or key:<override>."""
    return "seed" if on == "seed" else KEY + on.removeprefix(KEY)


def setting_of(baseline: str) -> tuple[str, str] | None:
    """`--baseline KEY=VALUE` (e.g. trainer.precision=32-true): (key, value); a method name: None."""
    key, sep, value = baseline.partition("=")
    return (key.strip(), value.strip()) if sep else None


def fill_keys(baseline: str | None) -> tuple[str, ...]:
    """The key `collect(fill=...)` must read from each run's config for this baseline: a `KEY=VALUE`
    baseline's KEY (a run at the default never overrides it), else none."""
    setting = setting_of(baseline) if baseline else None
    return (setting[0],) if setting else ()


def is_baseline(runs: pd.DataFrame, baseline: str) -> pd.Series:
    """Runs of the baseline: its method's label (erm, sam, sam_m128, ...) or `method=` override, or
    with `KEY=VALUE` the runs whose KEY (override, else config: `collect(fill=...)`) is VALUE."""
    if (setting := setting_of(baseline)) is not None:
        col = KEY + setting[0]
        if col not in runs:
            return pd.Series(False, index=runs.index)
        return runs[col].map(lambda v: equals_setting(v, setting[1])).astype(bool)
    hit = runs["method_label"].astype(str) == baseline if "method_label" in runs else pd.Series(False, index=runs.index)
    if KEY + "method" in runs:
        hit |= runs[KEY + "method"].astype(str) == baseline
    return hit


def check(runs: pd.DataFrame, on: str, baseline: str) -> None:
    """One line (ConfigError) for a `--paired` key the runs do not have or a baseline without runs."""
    present = runs[runs["status"] != "skipped"] if "status" in runs else runs
    col = unit_column(on)
    if col not in present or present[col].isna().all():
        have = (["seed"] if "seed" in present and present["seed"].notna().any() else []) + [
            c[len(KEY) :] for c in present.columns if c.startswith(KEY) and present[c].notna().any()
        ]
        raise ConfigError(f"--paired {on}: no run has that key; the runs have: {', '.join(have) or 'none'}")
    if (setting := setting_of(baseline)) is not None and not is_baseline(runs, baseline).any():
        col = KEY + setting[0]
        have = sorted({str(v) for v in runs[col].dropna()}) if col in runs else []
        raise ConfigError(
            f"--baseline {baseline}: no run has {setting[0]}={setting[1]}; "
            + (f"its values here: {', '.join(have)}" if have else "no run has that key")
        )
    if not is_baseline(runs, baseline).any():
        methods = sorted(
            {str(m) for m in runs.get("method_label", pd.Series(dtype=object)).dropna()}
            | {str(m) for m in runs.get(KEY + "method", pd.Series(dtype=object)).dropna()}
        )
        raise ConfigError(
            f"--baseline {baseline}: no runs of that method; the methods here: {', '.join(methods) or 'none'}"
        )


def _unit_order(units) -> list:
    numbers = pd.to_numeric(pd.Series(list(units), dtype=object), errors="coerce")
    if numbers.notna().all():
        return [u for _, u in sorted(zip(numbers, units))]
    return sorted(units, key=str)


def paired(runs: pd.DataFrame, info: dict, on: str, baseline: str) -> tuple[pd.DataFrame, dict]:
    """One row per non-baseline table row: keys, the matched baseline row, {unit: difference},
    number of pairs, mean, ci_low, ci_high, number below the baseline, units without a pair, note."""
    metric, col = info["metric"], unit_column(on)
    groups = [g for g in info["groups"] if g != col]
    pinfo = {"metric": metric, "on": on, "baseline": baseline, "groups": groups, "units": [], "baseline_rows": 0}
    empty = pd.DataFrame(columns=[*groups, *COLUMNS])
    if metric not in runs or col not in runs:
        return empty, pinfo
    done = runs[(runs["status"] == "finished") & runs[metric].notna()].copy()
    done["_unit"] = done[col].astype(object).where(done[col].notna(), done["job"])
    done["_base"] = is_baseline(done, baseline)
    done["_all"] = 0
    by = groups or ["_all"]
    rows = []
    for key, members in done.groupby(by, dropna=False, sort=False):
        keys = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        # Runs of one row that share a unit (a seed run twice) are averaged first, as in the main table.
        values = members.groupby("_unit", sort=False)[metric].mean()
        rows.append({"keys": keys, "base": bool(members["_base"].all()), "values": values})
    bases = [r for r in rows if r["base"]]
    pinfo["baseline_rows"] = len(bases)
    if not bases:  # its runs failed, are still running, or lack the metric
        pinfo["why"] = f"no finished {baseline} run with {metric}: nothing to pair with"
        return empty, pinfo
    # A method baseline differs in the keys that name the method; a KEY=VALUE baseline in KEY alone
    # (each method is then paired with its own run at the baseline's setting).
    setting = setting_of(baseline)
    match_keys = [g for g in groups if (g[len(KEY) :] != setting[0] if setting else g[len(KEY) :] not in LABEL_KEYS)]
    out = []
    for row in (r for r in rows if not r["base"]):
        found = [
            b
            for b in bases
            if all(
                pd.isna(row["keys"][g]) or pd.isna(b["keys"][g]) or row["keys"][g] == b["keys"][g] for g in match_keys
            )
        ]
        entry = {
            **{g: row["keys"][g] for g in groups},
            "baseline_row": "",
            "diffs": {},
            "n": 0,
            "mean": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "below": 0,
            "unpaired": "",
            "note": "",
        }
        if len(found) != 1:
            entry["note"] = (
                f"no {baseline} row with the same {', '.join(g[len(KEY) :] for g in match_keys) or 'keys'}"
                if not found
                else f"{len(found)} {baseline} rows match ({'; '.join(row_name(b['keys'], match_keys) for b in found)})"
            )
            out.append(entry)
            continue
        base = found[0]
        entry["baseline_row"] = row_name(base["keys"], groups)
        mine, theirs = row["values"], base["values"]
        common = [u for u in _unit_order(set(mine.index) | set(theirs.index)) if u in mine.index and u in theirs.index]
        diffs = {u: round(float(mine[u] - theirs[u]), 12) for u in common}  # 0.41 - 0.40 is 0.01, not 0.0099999...
        entry["diffs"] = diffs
        entry["n"] = len(diffs)
        if diffs:
            values = np.array(list(diffs.values()))
            entry["mean"] = float(values.mean())
            entry["ci_low"], entry["ci_high"] = bootstrap_ci(values) or (math.nan, math.nan)
            entry["below"] = int((values < 0).sum())
        alone = [u for u in _unit_order(set(mine.index)) if u not in theirs.index]
        entry["unpaired"] = " ".join(map(str, alone))
        out.append(entry)
    pinfo["units"] = _unit_order({u for e in out for u in e["diffs"]})
    frame = pd.DataFrame(out, columns=[*groups, *COLUMNS])
    order = [c for c in groups if c != RHO] + ([RHO] if RHO in groups else [])
    if len(frame) and order:
        frame = frame.sort_values(order, na_position="first", kind="stable", key=_sortable).reset_index(drop=True)
    return frame, pinfo


def _scale(metric: str) -> tuple[float, str, str]:
    """(scale, format spec, unit words) of a difference: percentage points for errors."""
    return (100.0, "+.2f", "percentage points") if is_error(metric) else (1.0, "+.3g", "")


def display_frame(frame: pd.DataFrame, pinfo: dict) -> pd.DataFrame:
    """The paired table as text cells: keys, one column per seed, mean difference with CI, count below."""
    scale, spec, _ = _scale(pinfo["metric"])
    on, baseline = pinfo["on"], pinfo["baseline"]
    out = pd.DataFrame({g[len(KEY) :]: frame[g].map(_cell) for g in pinfo["groups"]})
    if pinfo["baseline_rows"] > 1:
        out[f"vs {baseline}"] = frame["baseline_row"].replace("", "-")
    for u in pinfo["units"]:
        out[f"{on} {u}"] = [format(scale * d[u], spec) if u in d else "-" for d in frame["diffs"]]
    what = _what(pinfo["metric"]).removesuffix(" %")
    named = [n for n in ("pp" if is_error(pinfo["metric"]) else None, interval_name(frame["n"])) if n]
    out[f"{what} minus {baseline}" + (f" ({', '.join(named)})" if named else "")] = [
        format_mean_ci(r["mean"], r["ci_low"], r["ci_high"], scale, spec) for _, r in frame.iterrows()
    ]
    out[f"below {baseline}"] = [f"{r['below']} of {r['n']}" if r["n"] else "-" for _, r in frame.iterrows()]
    return out


def notes(frame: pd.DataFrame, pinfo: dict) -> list[str]:
    """The lines under the paired table: what a difference is, the interval, rows left unpaired."""
    on, baseline, metric = pinfo["on"], pinfo["baseline"], pinfo["metric"]
    _, _, unit = _scale(metric)
    lines = [
        f"paired on {on}: each row minus the {baseline} run of the same {on} ({_what(metric).removesuffix(' %')}"
        f"{', ' + unit if unit else ''}; negative: below {baseline}). Keys only one of the two has (like method.rho) "
        "are not matched; every other key they share is.",
        interval_note(frame["n"] if len(frame) else [], over=f"{on}s").replace("of the mean", "of the mean difference"),
    ]
    for _, r in frame.iterrows():
        name = row_name({g: r[g] for g in pinfo["groups"]}, pinfo["groups"])
        if r["note"]:
            lines.append(f"{name}: not paired: {r['note']}.")
        elif r["unpaired"]:
            lines.append(f"{name}: {on} {r['unpaired']} with no {baseline} run, left out.")
    return lines


def report(frame: pd.DataFrame, pinfo: dict, markdown: bool = False) -> str:
    """The paired section: a heading, the table and its notes (console or Markdown)."""
    head = f"paired differences to {pinfo['baseline']} (same {pinfo['on']})"
    parts = [f"## {head[0].upper()}{head[1:]}"] if markdown else [head]
    if frame.empty:
        why = pinfo.get("why") or f"no finished row besides {pinfo['baseline']}'s to pair with it"
        return "\n".join(parts + ["", why + "."]) + ("\n" if markdown else "")
    table = display_frame(frame, pinfo).to_markdown(
        index=False, tablefmt="pipe" if markdown else "simple", disable_numparse=True
    )
    parts += ["", table, ""] + [("- " if markdown else "") + line for line in notes(frame, pinfo)]
    return "\n".join(parts) + ("\n" if markdown else "")


def paired_csv(frame: pd.DataFrame, pinfo: dict) -> pd.DataFrame:
    """paired.csv: one row per paired row; differences as fractions (as in results.json)."""
    out = pd.DataFrame({g[len(KEY) :]: frame[g] for g in pinfo["groups"]})
    out.insert(0, "metric", pinfo["metric"])
    out.insert(1, "baseline", pinfo["baseline"])
    out.insert(2, "paired_on", pinfo["on"])
    out["baseline_row"] = frame["baseline_row"]
    for u in pinfo["units"]:
        out[f"diff_{pinfo['on']}_{u}"] = [d.get(u, math.nan) for d in frame["diffs"]]
    for c in ("n", "mean", "ci_low", "ci_high", "below", "unpaired", "note"):
        out[c if c not in ("n", "below") else {"n": "n_pairs", "below": "n_below"}[c]] = frame[c]
    return out
