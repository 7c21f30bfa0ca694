"""Aggregate Hydra multiruns into a table (one row per group of runs: overrides minus the seed), CSV, Markdown and plots.

    python sweep.py multirun/rho_grid/2026-11-28/10-00-00            # writes <dir>/summary/
    python sweep.py multirun/paper_c10 multirun/erm_c10 --out results/c10
    python sweep.py <dir> --metric best          # best-epoch instead of final test error
    python sweep.py --wandb ENTITY/PROJECT --group rho_grid/2026-11-28/10-00-00

Exit status: 0 with a table, 1 when no job finished, 2 for bad input.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from sam_lightning.sweep import report
from sam_lightning.sweep.collect import SweepInputError, collect
from sam_lightning.sweep.table import aggregate

OUTPUT_NAMES = ("summary.csv", "summary.md", "runs.csv")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sweep.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("dirs", nargs="*", help="multirun folders (or single run folders) to aggregate together")
    p.add_argument("--out", help="where to write the CSV, Markdown and PNGs (default: <first dir>/summary)")
    p.add_argument("--metric", choices=("final", "best"), default="final",
                   help="final: test error after the last epoch (the paper's); best: lowest over epochs")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    p.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from the W&B API instead of folders")
    p.add_argument("--group", help="with --wandb: the W&B group (a multirun's is its folder below multirun/)")
    p.add_argument("--no-report", action="store_true", help="with --wandb: do not log the summary back to W&B")
    args = p.parse_args(argv)
    if args.wandb and args.dirs:
        p.error("give either multirun folders or --wandb, not both")
    if not args.wandb and not args.dirs:
        p.error("give a multirun folder, e.g. python sweep.py multirun/2026-11-28/10-00-00")
    if bool(args.wandb) != bool(args.group):
        p.error("--wandb and --group go together")
    return args


def _out_dir(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    if args.wandb:
        return Path("multirun") / "from_wandb" / re.sub(r"[^\w.-]+", "_", args.group)
    return Path(args.dirs[0]) / "summary"


def _plots(rows, out: Path) -> list[Path]:
    from sam_lightning.sweep import plots  # matplotlib only when plotting

    made = [plots.plot_test_error_vs_rho(rows, out / "test_error_vs_rho.png"),
            plots.plot_test_error_curves(rows, out / "test_error_curves.png")]
    return [p for p in made if p is not None]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.wandb:
            from sam_lightning.sweep.wandb_io import collect_wandb

            runs, problems = collect_wandb(args.wandb, args.group)
            sources = [f"wandb:{args.wandb} group {args.group}"]
        else:
            runs, problems = collect(args.dirs)
            sources = list(args.dirs)
    except SweepInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = aggregate(runs, metric=args.metric)
    print(report.console_report(rows, problems, sources))
    out = _out_dir(args)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"error: --out {out} cannot be created ({err.strerror or err}); choose a writable folder", file=sys.stderr)
        return 2
    report.write_runs_csv(out / "runs.csv", runs, problems)
    if not rows:
        print(f"\nerror: none of the {len(problems)} job(s) finished; see {out / 'runs.csv'}", file=sys.stderr)
        return 1
    report.write_summary_csv(out / "summary.csv", rows)
    images = [] if args.no_plots else _plots(rows, out)
    (out / "summary.md").write_text(report.markdown_report(rows, problems, sources, [str(i) for i in images]))
    print(f"\nwrote {', '.join(str(out / n) for n in (*OUTPUT_NAMES, *(i.name for i in images)))}")
    if args.wandb and not args.no_report:
        from sam_lightning.sweep.wandb_io import log_report

        url = log_report(args.wandb, args.group, report.HEADERS, [report.cells(r) for r in rows], images)
        print(f"W&B report run: {url}")
    return 0
