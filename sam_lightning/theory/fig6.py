"""The Fig. 6 table: GD, full-batch n-SAM and 1-SAM on the diagonal network, mean +- std over seeds.

    python -m sam_lightning.theory.fig6                                   # 3 seeds, ~1 min on 2 cores
    python -m sam_lightning.theory.fig6 --seeds 0 1 2 3 4 --png docs/img/fig6_diag_net.png
    python -m sam_lightning.theory.fig6 --engine shared                   # every step through sam_gradients (~12 min)
    python -m sam_lightning.theory.fig6 --set train.alpha=0.05 method.rho=0.1   # any Hydra override
    python -m sam_lightning.theory.fig6 --experiment diag_net_sgd          # Fig. 13: the stochastic variants

Each (method, seed) is the job `python theory.py experiment=diag_net method=<gd|nsam_full|sam_m1>
seed=<s>`, composed from the same conf/theory/ files. The default engine is `vectorized`: 1-SAM
through `sam_gradients` loops over the 20 examples of every step (14-18 ms per step, ~6 min per
run), which would not fit 3 methods x 3 seeds in 3 minutes; tests/test_theory.py shows both engines
give the same iterates. Writes <out>/fig6_table.md, <out>/fig6_results.json and the PNG.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from sam_lightning.jsonio import atomic_write_json
from sam_lightning.theory.runner import run_metrics
from sam_lightning.theory.spec import TheoryMethod

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "theory"
METHODS = ("gd", "nsam_full", "sam_m1")


def compose_job(method: str, seed: int, overrides: list[str] = (), experiment: str = "diag_net") -> DictConfig:
    """The config `python theory.py experiment=<experiment> method=<method> seed=<seed> <overrides>` would run."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="theory", overrides=[f"experiment={experiment}", f"method={method}", f"seed={seed}", *overrides])


def run_one(method: str, seed: int, overrides: list[str], experiment: str = "diag_net") -> tuple[str, dict]:
    """One (method, seed) job: its table label and its measurements."""
    torch.set_num_threads(1)  # tiny tensors: threads only add synchronization
    cfg = compose_job(method, seed, list(overrides), experiment)
    label = TheoryMethod.from_mapping(OmegaConf.to_container(cfg.method, resolve=True)).display_name()
    started = time.time()
    out = run_metrics(cfg, Path("."))
    out["seed"], out["wall_time_s"] = seed, round(time.time() - started, 2)
    return label, out


def run_table(seeds: list[int], overrides: list[str] = (), methods: tuple[str, ...] = METHODS, jobs: int = 2,
              experiment: str = "diag_net", log=print) -> dict:
    """{label: [per-seed result]} for every method, `jobs` runs at a time (one process each)."""
    tasks = [(method, seed, list(overrides), experiment) for method in methods for seed in seeds]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            done = list(pool.map(run_one, *zip(*tasks)))
    else:
        done = [run_one(*task) for task in tasks]
    results = {}
    for label, out in done:
        results.setdefault(label, []).append(out)
        log(f"{label:6s} seed {out['seed']}: train {out['final_train_loss']:.2e}  test {out['final_test_loss']:.4g}  "
            f"||beta||_1 {out['final_beta_l1']:.4g}  ({out['wall_time_s']:.1f} s)")
    return results


def _mean_std(values: list[float]) -> str:
    if any(v is None for v in values):
        return "diverged"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3g} ± {std:.2g}"


def markdown_table(results: dict) -> str:
    """Mean ± std over seeds; the last column compares each seed's test loss with GD's on the same data."""
    gd = {r["seed"]: r["final_test_loss"] for r in results.get("GD", [])}
    lines = [
        "| method | test loss | train loss | ‖β‖₁ | test loss / GD's (per seed: mean, min–max) | iterations |",
        "|---|---|---|---|---|---|",
    ]
    for label, runs in results.items():
        ratios = [r["final_test_loss"] / gd[r["seed"]] for r in runs if gd.get(r["seed"]) and r["final_test_loss"] is not None]
        ratio = f"{statistics.fmean(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "–"
        lines.append(
            f"| {label} | {_mean_std([r['final_test_loss'] for r in runs])} | {_mean_std([r['final_train_loss'] for r in runs])} "
            f"| {_mean_std([r['final_beta_l1'] for r in runs])} | {ratio} | {runs[0]['iterations']} |"
        )
    star = next(iter(results.values()))
    lines.append(f"\n‖β*‖₁ = {_mean_std([r['beta_star_l1'] for r in star])}; seeds {', '.join(str(r['seed']) for r in star)}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="diag_net", help="a conf/theory/experiment preset, e.g. diag_net_sgd (Fig. 13)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--engine", choices=("vectorized", "shared"), default="vectorized")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one process each (default: 2 cores)")
    parser.add_argument("--iterations", type=int, default=None, help="default: the preset's (2e4)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra Hydra overrides")
    parser.add_argument("--out", type=Path, default=Path("outputs/theory/fig6"))
    parser.add_argument("--png", type=Path, default=None, help="default: <out>/fig6_diag_net.png")
    args = parser.parse_args(argv)
    overrides = [f"train.engine={args.engine}", "train.log_every=100", *args.set]  # 200 rows: smooth curves
    if args.iterations is not None:
        overrides.append(f"train.iterations={args.iterations}")
    started = time.time()
    results = run_table(args.seeds, overrides, jobs=args.jobs, experiment=args.experiment)
    elapsed = time.time() - started
    table = markdown_table(results)
    command = "python -m sam_lightning.theory.fig6 " + " ".join(sys.argv[1:] if argv is None else argv)
    text = f"{table}\n\nCommand: `{command.strip()}` ({elapsed:.0f} s, engine {args.engine}, {args.jobs} processes).\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fig6_table.md").write_text(text)
    atomic_write_json(args.out / "fig6_results.json", {"status": "finished", "wall_time_s": round(elapsed, 1), "overrides": overrides, "results": results})
    from sam_lightning.theory.plots import plot_diag_histories

    png = plot_diag_histories({k: [r["history"] for r in v] for k, v in results.items()}, args.png or args.out / "fig6_diag_net.png",
                              title=f"python theory.py experiment={args.experiment} {' '.join(overrides)}; seeds {args.seeds}")
    print(f"\n{text}\ntable: {args.out / 'fig6_table.md'}\nfigure: {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
