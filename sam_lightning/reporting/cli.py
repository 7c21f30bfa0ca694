"""Aggregate Hydra multiruns into a table (one row per group of runs: the overrides that vary, minus the seed), CSV, Markdown and plots.

    python sweep.py multirun/rho_grid/2026-11-28/10-00-00            # writes <dir>/summary/
    python sweep.py multirun/paper_c10 multirun/erm_c10 --out results/c10
    python sweep.py <dir> --metric best          # best epoch (on validation when the runs have a split)
    python sweep.py multirun/theory/<date>/<time>  # theory runs: test loss (--metric auto)
    python sweep.py --wandb ENTITY/PROJECT --group rho_grid/2026-11-28/10-00-00
    python sweep.py <dir> --paired seed --baseline erm   # and each row minus ERM at the same seed
    python sweep.py <dir> --export docs/results/<name>   # copy the finished jobs' results.json only
    python sweep.py <dir> --wandb-sync           # upload every offline W&B run below the folder(s)
    python sweep.py <stage-1 dir> --next         # the rho protocol's stage 2: a command per method

Exit status: 0 with a table, 1 when no job finished, 2 for bad input.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from sam_lightning.entry import BAD_INPUT, FAILED
from sam_lightning.reporting import paired as pairing
from sam_lightning.reporting import table
from sam_lightning.reporting.collect import collect, select
from sam_lightning.settings.config import ConfigError

OUTPUT_NAMES = ("summary.csv", "summary.md", "runs.csv")
PAIRED_CSV = "paired.csv"
PLOT_AT_BEST_VAL = "best_val_epoch_test_error"  # test_error_at_best_val as the plots name it


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="sweep.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    p.add_argument("dirs", nargs="*", help="multirun folders (or single run folders) to aggregate together")
    p.add_argument("--out", help="where to write the CSV, Markdown and PNGs (default: <first dir>/summary)")
    p.add_argument(
        "--metric",
        default="auto",
        help="auto (test error, or test loss for runs without one), final (test error after the last "
        "epoch, the paper's), best (lowest over epochs; with a validation split: the test error at "
        "the epoch of lowest validation error), loss (final test loss), or any final_*/best_* key "
        "of results.json. With a validation split the best rho is chosen on the validation "
        "counterpart (final_val_error, best_val_error, final_val_loss)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    p.add_argument(
        "--paired",
        metavar="KEY",
        help="also a paired table: each row minus the --baseline run of the same KEY "
        "(seed), per KEY and as a mean with its CI; written to paired.csv and summary.md",
    )
    p.add_argument(
        "--baseline",
        metavar="METHOD|KEY=VALUE",
        help="with --paired: the method label as the table shows it (erm, sam, sam_m128, ...), or a "
        "setting (trainer.precision=32-true): each method then minus its own runs at that setting "
        "(a run that did not override KEY is read at its config's value)",
    )
    p.add_argument(
        "--where",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="only the jobs with KEY=VALUE (seed or any override key; repeatable), e.g. --where seed=0: "
        "the first stage of a rho choice, each rho's validation error on one seed; --where seed=0,1: any of them",
    )
    p.add_argument(
        "--export",
        metavar="FOLDER",
        help="copy only the results.json of every job that ended (finished, diverged, "
        "skipped) into FOLDER/<job folder>/, e.g. docs/results/<name>; no table",
    )
    p.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from the W&B API instead of folders")
    p.add_argument(
        "--group",
        help="with --wandb: the W&B group (a multirun's: <preset or swept keys>/<date>/<time>, as W&B shows it)",
    )
    p.add_argument("--no-report", action="store_true", help="with --wandb: do not log the summary back to W&B")
    p.add_argument(
        "--wandb-sync",
        action="store_true",
        help="upload every offline W&B run below the folders (wandb sync on each job's wandb/offline-run-*); no table",
    )
    p.add_argument(
        "--next",
        action="store_true",
        help="print the second stage of the rho protocol: for each method, its command at the rho "
        "the folder's runs chose (validation split), over the remaining seeds; no table",
    )
    p.add_argument(
        "--seeds",
        metavar="S,S,...",
        help="with --next: the stage-2 seeds (default: conf/train/sweep/seeds.yaml's, minus stage 1's)",
    )
    args = p.parse_args(argv)
    if args.wandb and args.dirs:
        p.error("give either multirun folders or --wandb, not both")
    if not args.wandb and not args.dirs:
        p.error("give a multirun folder, e.g. python sweep.py multirun/2026-11-28/10-00-00")
    if bool(args.wandb) != bool(args.group):
        p.error("--wandb and --group go together")
    if bool(args.paired) != bool(args.baseline):
        p.error("--paired and --baseline go together, e.g. --paired seed --baseline erm")
    if args.export and args.wandb:
        p.error("--export copies job folders: give multirun folders, not --wandb")
    if args.wandb_sync and (args.wandb or args.export):
        p.error("--wandb-sync uploads the runs of multirun folders: give folders, without --wandb or --export")
    if args.export and args.where:
        p.error("--export copies every job that ended: --where chooses table rows, not what to export")
    if args.next and (args.wandb or args.export or args.wandb_sync or args.paired):
        p.error("--next reads stage-1 folders: give folders, without --wandb, --export, --wandb-sync or --paired")
    if args.seeds is not None and not args.next:
        p.error("--seeds goes with --next")
    if args.seeds is not None and not re.fullmatch(r"\d+(,\d+)*", args.seeds):
        p.error(f"--seeds: comma-separated seeds, e.g. 1,2, got {args.seeds!r}")
    if args.metric not in ("auto", *table.METRICS) and not args.metric.startswith(("final_", "best_")):
        p.error(f"--metric: auto, {', '.join(table.METRICS)} or a final_*/best_* key, got {args.metric!r}")
    return args


def summarize(
    runs: pd.DataFrame,
    histories: dict,
    sources: list[str],
    out: Path,
    metric: str = "auto",
    plots: bool = True,
    echo=print,
    paired: tuple[str, str] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The whole aggregation: prints the table, writes runs.csv, summary.csv, summary.md and the PNGs
    into `out`. sweep.py and the end-of-multirun Hydra callback both call it. `paired` = (key,
    baseline method): also the paired table, printed, in paired.csv and in summary.md."""
    summary, info = table.aggregate(runs, metric)
    echo(table.report(summary, info, runs, sources))
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)
    if summary.empty:
        return summary, info
    table.summary_csv(summary, info).to_csv(out / "summary.csv", index=False)
    written = [*OUTPUT_NAMES]
    paired_md = ""
    if paired:
        frame, pinfo = pairing.paired(runs, info, *paired)
        echo("\n" + pairing.report(frame, pinfo))
        pairing.paired_csv(frame, pinfo).to_csv(out / PAIRED_CSV, index=False)
        paired_md = "\n" + pairing.report(frame, pinfo, markdown=True)
        written.append(PAIRED_CSV)
    images = []
    if plots:
        from sam_lightning.reporting import plots as plotting  # matplotlib only when plotting

        name = "test_loss" if info["metric"].endswith("loss") else "test_error"
        plot_info, plot_runs = info, runs
        if info["metric"] == table.AT_BEST_VAL:  # the plots tell errors from losses by a name ending in "error"
            plot_info = {**info, "metric": PLOT_AT_BEST_VAL}
            plot_runs = runs.rename(columns={table.AT_BEST_VAL: PLOT_AT_BEST_VAL})
        # One summary plot: against the switch point (Fig. 8), else against rho, else one point per row.
        by_switch = plotting.sweep_vs_switch(summary, plot_info, out / f"{name}_vs_switch.png")
        by_rho = None if by_switch else plotting.sweep_vs_rho(summary, plot_info, out / f"{name}_vs_rho.png")
        by_row = (
            None
            if by_switch or by_rho
            else plotting.sweep_points(summary, plot_info, plot_runs, out / f"{name}_by_row.png")
        )
        images = [
            p
            for p in (
                by_switch,
                by_rho,
                by_row,
                plotting.sweep_curves(summary, plot_info, plot_runs, histories, out / f"{name}_curves.png"),
            )
            if p
        ]
    (out / "summary.md").write_text(
        table.report(summary, info, runs, sources, markdown=True, images=[str(i) for i in images]) + paired_md
    )
    echo(f"\nwrote {', '.join(str(out / n) for n in (*written, *(i.name for i in images)))}")
    info["images"] = images
    return summary, info


def _out_dir(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    if args.wandb:
        return Path("multirun") / "from_wandb" / re.sub(r"[^\w.-]+", "_", args.group)
    return Path(args.dirs[0]) / "summary"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.export:
        return _export(args.dirs, args.export)
    if args.wandb_sync:
        from sam_lightning.reporting.wandb_io import sync_offline

        try:
            return sync_offline(args.dirs)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return BAD_INPUT
    try:
        if args.wandb:
            from sam_lightning.reporting.wandb_io import collect_wandb

            runs, histories = collect_wandb(args.wandb, args.group)
            sources = [f"wandb:{args.wandb} group {args.group}"]
        else:
            runs, histories = collect(args.dirs, fill=pairing.fill_keys(args.baseline if args.paired else None))
            sources = list(args.dirs)
        if args.where:
            runs = select(runs, args.where)
            sources.append(f"where {' and '.join(args.where)}")
        if args.paired:
            pairing.check(runs, args.paired, args.baseline)
        if args.next:
            from sam_lightning.reporting.next_stage import next_commands

            seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
            print("\n".join(next_commands(runs, args.dirs, args.metric, seeds)))
            return 0
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return BAD_INPUT
    out = _out_dir(args)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(
            f"error: --out {out} cannot be created ({err.strerror or err}); choose a writable folder", file=sys.stderr
        )
        return BAD_INPUT
    try:
        summary, info = summarize(
            runs,
            histories,
            sources,
            out,
            args.metric,
            plots=not args.no_plots,
            paired=(args.paired, args.baseline) if args.paired else None,
        )
    except OSError as err:  # e.g. a read-only --out: one line, not a traceback
        print(f"error: --out {out}: cannot write {err.filename or ''} ({err.strerror or err})", file=sys.stderr)
        return BAD_INPUT
    if summary.empty:
        print(
            f"\nerror: none of the {len(runs)} job(s) finished with {info['metric']}; see {out / 'runs.csv'}",
            file=sys.stderr,
        )
        return FAILED
    if args.wandb and not args.no_report:
        from sam_lightning.reporting.wandb_io import log_report

        shown = table.display_frame(summary, info)
        url = log_report(args.wandb, args.group, list(shown.columns), shown.values.tolist(), info.get("images", []))
        print(f"W&B report run: {url}")
    return 0


def _export(dirs: list[str], target: str) -> int:
    from sam_lightning.reporting.export import describe, export

    try:
        done = export(dirs, target)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return BAD_INPUT
    except OSError as err:
        print(f"error: --export {target}: {err.strerror or err}", file=sys.stderr)
        return BAD_INPUT
    print(describe(done, target))
    if not done.written:
        print(f"error: no job below {', '.join(dirs)} has ended yet: nothing to export", file=sys.stderr)
        return FAILED
    return 0
