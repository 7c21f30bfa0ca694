"""The summary as text: a console table, Markdown, and CSV files (errors in the CSVs are fractions,
as in results.json; the console and Markdown show percent)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from sam_lightning.sweep.collect import Problem, Run
from sam_lightning.sweep.table import Row, common_overrides

HEADERS = ["method", "m", "rho", "data", "model", "other", "seeds", "test error % (95% CI)", "train error %", "best rho"]
BEST_NOTE = ("best rho: lowest mean test error among the rows of one method that differ only in rho. "
             "95% CI: percentile bootstrap of the mean over seeds (none for a single seed).")


def pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _test_cell(row: Row) -> str:
    if row.ci is None:
        return pct(row.test_mean)
    return f"{pct(row.test_mean)} [{pct(row.ci[0])}, {pct(row.ci[1])}]"


def cells(row: Row) -> list[str]:
    return [
        row.label, "-" if row.m is None else str(row.m), "-" if row.rho is None else f"{row.rho:g}",
        row.data, row.model, " ".join(row.other) or "", str(len(row.seeds)), _test_cell(row),
        pct(row.train_mean), "*" if row.best else "",
    ]


def _table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    body = [cells(r) for r in rows]
    keep = [i for i, h in enumerate(HEADERS) if h != "other" or any(b[i] for b in body)]
    return [HEADERS[i] for i in keep], [[b[i] for i in keep] for b in body]


def console_table(rows: list[Row]) -> str:
    headers, body = _table(rows)
    widths = [max(len(x) for x in col) for col in zip(headers, *body)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [headers, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    headers, body = _table(rows)
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in body]
    return "\n".join(out)


def problems_text(problems: list[Problem]) -> list[str]:
    return [f"{p.name}: {p.status}: {p.reason}" for p in problems]


def console_report(rows: list[Row], problems: list[Problem], sources: list[str]) -> str:
    parts = [f"sweep: {', '.join(sources)}"]
    common = common_overrides(rows)
    if common:
        parts.append(f"common overrides: {' '.join(common)}")
    parts += ["", console_table(rows), "", BEST_NOTE]
    if problems:
        parts += ["", f"excluded ({len(problems)} job(s) failed or unfinished):"]
        parts += [f"  {line}" for line in problems_text(problems)]
    return "\n".join(parts)


def markdown_report(rows: list[Row], problems: list[Problem], sources: list[str], images: list[str]) -> str:
    parts = ["# Sweep summary", "", f"Sweep: {', '.join(f'`{s}`' for s in sources)}"]
    common = common_overrides(rows)
    if common:
        parts.append(f"Common overrides: `{' '.join(common)}`")
    parts += ["", markdown_table(rows), "", BEST_NOTE]
    if problems:
        parts += ["", f"## Excluded ({len(problems)} job(s) failed or unfinished)", ""]
        parts += [f"- `{p.name}`: {p.status}: {p.reason}" for p in problems]
    if images:
        parts += [""] + [f"![{Path(i).stem}]({Path(i).name})" for i in images]
    return "\n".join(parts) + "\n"


def _num(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(float(value))


def write_summary_csv(path: Path, rows: list[Row]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "m", "rho", "data", "model", "other", "n_seeds", "n_runs", "seeds",
                    "test_error_mean", "test_error_ci_low", "test_error_ci_high", "train_error_mean", "best_rho", "group"])
        for r in rows:
            low, high = r.ci if r.ci else (None, None)
            w.writerow([r.label, r.m if r.m is not None else "", r.rho if r.rho is not None else "", r.data, r.model,
                        " ".join(r.other), len(r.seeds), len(r.runs), " ".join(map(str, r.seeds)),
                        _num(r.test_mean), _num(low), _num(high), _num(r.train_mean), int(r.best), ",".join(r.key)])


def write_runs_csv(path: Path, runs: list[Run], problems: list[Problem]) -> None:
    """Every job, finished or not: the raw numbers behind the summary."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "status", "reason", "group", "seed", "test_error", "train_error", "best_test_error"])
        for r in runs:
            w.writerow([r.name, "finished", "", ",".join(r.key), r.seed, _num(r.test_error), _num(r.train_error), _num(r.best_test_error)])
        for p in problems:
            w.writerow([p.name, p.status, p.reason, "", "", "", "", ""])
