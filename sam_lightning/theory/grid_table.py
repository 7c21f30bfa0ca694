"""A Markdown table of a theory multirun: mean ± std over seeds for every (method, rho).

    python theory.py -m experiment=diag_net_rho_grid
    python -m sam_lightning.theory.grid_table multirun/theory/<date>/<time> [--out table.md]

Reads every <job>/results.json below the folder; failed jobs are counted, diverged runs shown as such.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def collect(sweep_dir: Path) -> tuple[dict, int]:
    """{(method label, rho): [results]} of finished jobs, and the number of failed ones."""
    groups, failed = defaultdict(list), 0
    for path in sorted(sweep_dir.rglob("results.json")):
        payload = json.loads(path.read_text())
        if payload.get("status") != "finished":
            failed += 1
            continue
        groups[(payload["method"], payload["config"]["method"]["rho"])].append(payload)
    return dict(groups), failed


def _cell(values: list) -> str:
    if any(v is None for v in values):
        return f"diverged ({sum(v is None for v in values)}/{len(values)})"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3g} ± {std:.2g}"


def markdown(groups: dict, failed: int) -> str:
    lines = ["| method | rho | test loss | train loss | ‖β‖₁ | seeds |", "|---|---|---|---|---|---|"]
    for (method, rho), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        lines.append(f"| {method} | {rho:g} | {_cell([r['final_test_loss'] for r in runs])} | {_cell([r['final_train_loss'] for r in runs])} "
                     f"| {_cell([r['final_beta_l1'] for r in runs])} | {len(runs)} |")
    if failed:
        lines.append(f"\n{failed} job(s) failed: see their results.json `reason`.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a folder")
    groups, failed = collect(args.sweep_dir)
    if not groups:
        parser.error(f"no finished results.json below {args.sweep_dir}")
    text = markdown(groups, failed)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
