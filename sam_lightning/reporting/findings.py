"""The findings table of docs/reproduction.md: one row per deep-network figure of the paper, its laptop
verdict computed from the committed runs under docs/results/.

    python -m sam_lightning.reporting.findings      # prints the table (Markdown)

Each training-run row is a paired comparison, as `sweep.py <folders> --paired seed --baseline erm`
prints it: the row's final test error minus the baseline's at the same seed, the mean with its
interval (the seeds' range for 2-3 seeds, the 95% bootstrap CI for more) and how many seeds are
below. The verdict reads the interval against what the paper claims: "as the paper" when it lies
on the claimed side of zero, "opposite" when on the other, "not separated" when it holds zero; one or
two seeds get no verdict, only their numbers.
Rows of the analysis figures read the committed analysis JSON; figures without runs say why.
tests/test_committed_results.py regenerates the table and compares it with the document.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from sam_lightning.reporting import next_stage, paired, table
from sam_lightning.reporting.collect import CRITERION_MET, KEY, RHO, SWITCH_KEY, collect
from sam_lightning.reporting.stats import interval_name
from sam_lightning.run.duplicates import RHO as RHO_KEY
from sam_lightning.run.results import TRAIN_EVAL_ERROR
from sam_lightning.variants.erm import ERM

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
BEGIN, END = "<!-- findings:begin -->", "<!-- findings:end -->"
HEADER = ("figure", "paper's claim", "laptop verdict", "seeds", "command", "data")


@dataclass(frozen=True)
class Finding:
    figure: str
    claim: str  # quoted from the paper, with its section
    command: str  # what produced the runs
    folders: tuple[str, ...] = ()  # under docs/results/
    row: dict = field(default_factory=dict)  # the compared row: {override key: value}
    expect: str = "lower"  # the paper's side of zero for row minus baseline: lower | higher | none (no difference)
    baseline: str = ERM.name  # sweep.py --baseline: the method every row is paired with, or KEY=VALUE
    metric: str = "final"  # sweep.py's --metric: final, or best (test error at the best validation epoch)
    note: str = ""  # a fact the number needs beside it, or why a figure has no run
    compute: Callable[[Finding], tuple[str, str]] | None = None  # (verdict, seeds) for rows that are not paired runs


REGIME_A = ("laptop_sam_vs_erm",)
REGIME_A_5 = ("laptop_sam_vs_erm", "laptop_sam_vs_erm_precision/fp32")
SWITCH = ("laptop_sam_vs_erm_precision/fp32", "laptop_switch")  # ERM of seeds 0-2 rerun in laptop_switch
# The paper's words, quoted where several rows test them.
LOW_M = '"the only method that substantially improves generalization is low-m SAM (i.e., 128-SAM)" (Sec. 3)'
EARLY_LITTLE = (
    '"a method which is run at the beginning of training has little influence on the final performance" (Sec. 4.3)'
)
END_SWITCH = '"the test error clearly improves when switching from ERM to SAM" for the last 10% (Sec. 4.3)'
RHO_DECAY = (
    '"the ascent step size should not be decreased as drastically as the descent step size" (Sec. 5.1, App. E.6)'
)
NOISE = '"SAM noticeably improves generalization over ERM" with 60% label noise (Sec. 5.2)'

RUN_A = "`train.py -m experiment=laptop_sam_vs_erm data=imagefolder data.root=<tree>`"
FINDINGS = (
    Finding(
        "Fig. 1",
        LOW_M,
        RUN_A + " (stage 2: `method=erm,sam method.rho=0.025 seed=1,2,3,4`)",
        REGIME_A_5,
        {"method": "sam", "method.rho": 0.025},
        note="SAM (m = the batch, 64) vs ERM",
    ),
    Finding(
        "Fig. 1",
        LOW_M,
        RUN_A + " (`sweep.py ... --metric best`)",
        REGIME_A_5,
        {"method": "sam", "method.rho": 0.025},
        metric="best",
        note="SAM vs ERM, test error at each run's best validation epoch",
    ),
    Finding(
        "Fig. 1",
        LOW_M,
        "`train.py -m experiment=laptop_small_m ...`",
        REGIME_A,
        {"method": "sam_m4", "method.rho": 0.05},
        note="4-SAM vs ERM (rho chosen on validation; 12-16% training error)",
    ),
    Finding(
        "Fig. 1",
        '"both ... random perturbations and n-SAM ... do not substantially improve generalization" (Sec. 3)',
        RUN_A + " (`method=nsam`)",
        REGIME_A,
        {"method": "nsam", "method.rho": 0.1},
        expect="none",
        note="n-SAM vs ERM",
    ),
    Finding(
        "Fig. 1",
        '"the improvement from random perturbations is marginal" (Sec. 3)',
        RUN_A + " (`method=random +sweep=sigma_grid`)",
        REGIME_A,
        {"method": "random", "method.sigma": 0.005},
        expect="none",
        note="random (sigma 0.005, chosen on validation) vs ERM",
    ),
    Finding(
        "Figs. 2, 3",
        '"m-sharpness ranks correctly SAM and ERM for the same batch size" (Sec. 3); the 100-step/1-step "suboptimality factor tends to increase over m and can be as large as 10x" (Sec. 4.1)',
        "`python -m sam_lightning.analysis.sharpness ckpt=...` on regime A's seed 3-4 checkpoints",
        ("laptop_sam_vs_erm_analysis/sharpness",),
        compute=lambda f: sharpness_ranking(f),
    ),
    Finding(
        "Fig. 4",
        '"using multiple steps in SAM does not improve generalization" (Sec. 4.1)',
        "`train.py -m experiment=laptop_multistep ...` (paper scale: `experiment=fig4`)",
        ("laptop_sam_vs_erm_precision/fp32", "laptop_multistep"),
        {"method": "sam", "method.ascent_steps": 10, "method.rho": 0.025},
        expect="none",
        baseline="method.ascent_steps=1",
        note="SAM (m = 64, rho 0.025) with 10 ascent steps vs the same with 1 step",
    ),
    Finding(
        "Fig. 8",
        EARLY_LITTLE,
        "`train.py -m experiment=laptop_switch ...` (`method=sam_to_erm method.switch_at=...`)",
        SWITCH,
        {"method": "sam_to_erm", "method.m": 4},
        expect="none",
        note="4-SAM -> ERM vs ERM, by the share of epochs before the switch",
        compute=lambda f: over_switch_points(f),
    ),
    Finding(
        "Fig. 8",
        EARLY_LITTLE,
        "`train.py -m experiment=laptop_switch ...` (`method=erm_to_sam method.switch_at=...`)",
        SWITCH,
        {"method": "erm_to_sam", "method.m": 4},
        note="ERM -> 4-SAM vs ERM, by the share of epochs before the switch",
        compute=lambda f: over_switch_points(f),
    ),
    Finding(
        "Fig. 8",
        EARLY_LITTLE,
        RUN_A + " (`method=erm_to_sam method.rho=0.05 method.switch_at=0.5`)",
        REGIME_A,
        {"method": "erm_to_sam", "method.switch_at": 0.5, "method.rho": 0.05},
        note="ERM -> SAM (m = 64, rho 0.05) at 50% vs ERM",
    ),
    Finding(
        "Fig. 9",
        END_SWITCH,
        "`train.py -m experiment=laptop_switch ...`",
        SWITCH,
        {"method": "erm_to_sam", "method.switch_at": 0.9, "method.m": 4},
        note="ERM -> 4-SAM for the last 10% of the epochs vs ERM",
    ),
    Finding(
        "Fig. 9",
        END_SWITCH,
        "`train.py -m experiment=laptop_switch method=erm_to_sam method.m=null method.rho=0.2 method.switch_at=0.9 ...`",
        SWITCH,
        {"method": "erm_to_sam", "method.switch_at": 0.9, "method.rho": 0.2},
        note="ERM -> SAM (m = 64, rho 0.2) for the last 10% vs ERM",
    ),
    Finding(
        "Fig. 10",
        '"the final point of the ERM -> SAM model is situated in the same basin as the original ERM model" (Sec. 4.3)',
        "`python -m sam_lightning.analysis.interpolation ckpt_a=<ERM> ckpt_b=<ERM->SAM>` (seed 3; ERM -> SAM, m = 64, rho 0.2, for the last 10%)",
        ("laptop_switch_analysis/interpolation_sam",),
        compute=lambda f: same_basin(f),
    ),
    Finding(
        "Fig. 10",
        '"the final point of the ERM -> SAM model is situated in the same basin as the original ERM model" (Sec. 4.3)',
        "`python -m sam_lightning.analysis.interpolation ckpt_a=<ERM> ckpt_b=<ERM->SAM>` (seed 3; ERM -> 4-SAM, rho 0.0125, for the last 10%)",
        ("laptop_switch_analysis/interpolation_m4",),
        compute=lambda f: same_basin(f),
    ),
    Finding(
        "Fig. 11",
        '"both ERM and SAM converge to zero training error and the gradient normalization is not crucial" (Sec. 5.2)',
        "`train.py -m experiment=laptop_const_rho ...`",
        SWITCH + ("laptop_const_rho",),  # ERM by the same code: seeds 0-2 in laptop_switch, 3-4 in fp32
        {"method": "sam_const"},
        # "the SAM model has significantly better generalization" and "normalization is not crucial for
        # SAM" (Sec. 5.2): constant-rho SAM, too, ends below ERM.
        expect="lower",
        note="constant-rho SAM, the preset's two stages (its rho grid on seed 0, then the chosen rho on seeds 1-4)",
        compute=lambda f: converges_over_rho(f),
    ),
    Finding(
        "Fig. 11",
        '"both ERM and SAM converge to zero training error and the gradient normalization is not crucial" (Sec. 5.2)',
        "`train.py -m experiment=laptop_const_rho ...` (`method=sam method.rho=0.025`)",
        SWITCH + ("laptop_const_rho",),
        {"method": "sam", "method.rho": 0.025},
        note="normalized SAM (regime A's rho 0.025) by the same code as the constant-rho runs, vs ERM",
        compute=lambda f: converges(f),
    ),
    Finding(
        "Fig. 12",
        NOISE,
        "`train.py -m experiment=laptop_label_noise ...`",
        ("laptop_label_noise",),
        {"method": "sam", "method.rho": 0.1},
        note="SAM vs ERM, 60% flipped labels; SAM also fits the clean labels far less",
    ),
    Finding(
        "Fig. 12",
        NOISE,
        "`train.py -m experiment=laptop_label_noise ...` (`sweep.py ... --metric best`)",
        ("laptop_label_noise",),
        {"method": "sam", "method.rho": 0.1},
        metric="best",
        note="the same, test error at each run's best validation epoch (early stopping chosen on validation)",
    ),
    Finding(
        "Fig. 16",
        '"the generalization improvement is larger for smaller m and it is continuous in m" (App. E.1)',
        "`train.py -m experiment=laptop_small_m ...`",
        REGIME_A,
        {"method": "sam_m16", "method.rho": 0.025},
        note="16-SAM vs ERM, BatchNorm (GroupNorm fits at neither width 16 nor 32)",
    ),
    Finding(
        "Fig. 17",
        '"using SAM with large batch sizes without using a smaller m leads to suboptimal generalization" (Sec. 3)',
        "`train.py -m experiment=laptop_batch_sizes ...` (paper scale: `experiment=fig17`)",
        ("laptop_batch_sizes",),
        {"method": "sam"},
        expect="none",
        note="SAM (m = the batch, rho 0.025) vs ERM at the same batch size (batch 64: the first Fig. 1 row)",
        compute=lambda f: over_values(f, "data.batch_size", lambda batch: f"at batch {batch:g}", fits=True),
    ),
    Finding(
        "Fig. 18",
        '"test error improvements of SAM over ERM for different model width factors" (App. E.3)',
        "`train.py -m experiment=laptop_widths ...` (paper scale: `experiment=fig18`)",
        ("laptop_widths",),
        {"method": "sam"},
        note="SAM (rho 0.025) vs ERM at the same width (width 16: the first Fig. 1 row)",
        compute=lambda f: over_values(f, "model.width", lambda width: f"at width {width:g}", fits=True),
    ),
    Finding(
        "Fig. 19",
        '"the maximum loss ... is substantially different depending on whether we use training-time vs. test-time" BatchNorm (App. E.4)',
        "`python -m sam_lightning.analysis.sharpness bn='[train,eval]' ...`",
        ("laptop_sam_vs_erm_analysis/sharpness",),
        compute=lambda f: batchnorm_modes(f),
    ),
    Finding(
        "Fig. 19",
        '"the maximum loss ... is substantially different depending on whether we use training-time vs. test-time" BatchNorm (App. E.4)',
        "`train.py experiment=laptop_sam_vs_erm ... method=sam method.rho=0.1 seed=3 checkpoint.every_n_epochs=10`, then "
        "`python -m sam_lightning.analysis.sharpness experiment=laptop_fig19 run=<its folder>`",
        ("laptop_fig19_analysis/sharpness", "laptop_fig19"),
        note="SAM (rho 0.1, the paper's) over training",
        compute=lambda f: batchnorm_modes_over_training(f),
    ),
    Finding(
        "Fig. 20",
        '"the total objective value ... shows a consistent decreasing trend" (App. E.5)',
        RUN_A + " (`train/objective` per epoch, in each results.json's history)",
        REGIME_A_5,
        {"method": "sam", "method.rho": 0.025},
        compute=lambda f: objective_trend(f),
    ),
    Finding(
        "Fig. 21",
        RHO_DECAY,
        "`train.py -m experiment=laptop_rho_schedule ...` (paper scale: `experiment=fig21`)",
        ("laptop_sam_vs_erm_precision/fp32", "laptop_const_rho", "laptop_rho_schedule"),
        {"method": "sam", "method.rho_schedule": "lr", "method.rho": 0.025},
        expect="higher",
        baseline="method.rho_schedule=constant",
        note="SAM (rho 0.025) with rho decayed as the learning rate vs constant rho",
    ),
    Finding(
        "Fig. 21",
        RHO_DECAY,
        "`train.py -m experiment=laptop_rho_schedule ...` (paper scale: `experiment=fig21`)",
        ("laptop_fig19", "laptop_rho_schedule"),
        {"method.rho_schedule": "lr", "method.rho": 0.1},  # every run of these folders is SAM
        expect="higher",
        baseline="method.rho_schedule=constant",
        note="SAM (rho 0.1) with rho decayed as the learning rate vs constant rho (the Fig. 19 run)",
    ),
    Finding(
        "Fig. 22",
        '"we confirm the same findings for SAM with constant rho" under label noise (Sec. 5.2, App. E.7)',
        "`train.py -m experiment=laptop_noise_const_rho ...` (paper scale: `experiment=fig12`)",
        ("laptop_label_noise", "laptop_noise_const_rho"),
        {"method": "sam_const", "method.rho": 0.1},
        note="constant-rho SAM (rho 0.1, the better of 0.03 and 0.1 on validation) vs ERM, 60% flipped labels",
    ),
)


def _match(frame, row: dict, unset_passes: bool = False):
    """The frame's rows with each of `row`'s values (`unset_passes`: or without the key, as ERM has no rho)."""
    hit = frame
    for key, value in row.items():
        col = KEY + key
        if col not in hit:
            if unset_passes:  # no run sets the key: every run is "without" it; the next keys still apply
                continue
            return hit.iloc[0:0]
        same = hit[col].map(lambda v, value=value: table._same(v, value) or str(v) == str(value))
        hit = hit[same | hit[col].isna()] if unset_passes else hit[same]
    return hit


def _narrowed_runs(finding: Finding) -> tuple[pd.DataFrame, dict] | None:
    """(the runs of the finding's folders narrowed to its shared settings, those settings); None
    without a row or with a folder missing."""
    folders = [RESULTS / f for f in finding.folders]
    if not finding.row or not all(f.is_dir() for f in folders):
        return None
    runs, _ = collect(folders, fill=paired.fill_keys(finding.baseline))
    # The row's settings that both sides may share (a batch size, a width) narrow the runs before they
    # are paired: the paired table names only the keys that vary, so a setting every remaining run has
    # is no column of it. The keys that name the method, or the baseline's own setting, differ by design.
    setting = paired.setting_of(finding.baseline)
    shared = {k: v for k, v in finding.row.items() if k not in paired.LABEL_KEYS and (not setting or k != setting[0])}
    return _match(runs, shared, unset_passes=True), shared


def baseline_fits(finding: Finding) -> str | None:
    """How many of the baseline's finished runs (at the row's shared settings) met their regime's
    criterion, e.g. "ERM meets the criterion on 2 of 5 seeds"; None where none was checked."""
    if (narrowed := _narrowed_runs(finding)) is None:
        return None
    runs, _ = narrowed
    base = runs[(runs["status"] == "finished") & paired.is_baseline(runs, finding.baseline)]
    met = base[CRITERION_MET].dropna() if CRITERION_MET in base else pd.Series(dtype=bool)
    if met.empty:
        return None
    who = "ERM" if finding.baseline == ERM.name else finding.baseline
    return f"{who} meets the criterion on {int(met.astype(bool).sum())} of {len(met)} seeds"


def paired_row(finding: Finding) -> dict | None:
    """The finding's paired numbers (points of test error): mean, low, high, n, below; None without runs."""
    if (narrowed := _narrowed_runs(finding)) is None:
        return None
    runs, shared = narrowed
    _, info = table.aggregate(runs, finding.metric)
    frame, _ = paired.paired(runs, info, "seed", finding.baseline)
    hit = _match(frame, {k: v for k, v in finding.row.items() if k not in shared or KEY + k in frame})
    if hit.empty:
        return None
    if len(hit) > 1:  # the row must name one comparison; the first of several would be a silent pick
        raise ValueError(
            f"{finding.figure} row {finding.row} matches {len(hit)} paired rows: name the keys that differ"
        )
    r = hit.iloc[0]
    return {k: (100 * float(r[k]) if k in ("mean", "ci_low", "ci_high") else int(r[k])) for k in paired.COLUMNS[2:7]}


def _each_value(finding: Finding, key: str) -> list[tuple[float, Finding]]:
    """(value, the finding narrowed to it) for each value of `key` the row's finished runs hold, in order."""
    runs, _ = collect([RESULTS / f for f in finding.folders])
    hit = _match(runs[runs["status"] == "finished"], finding.row)
    values = sorted(pd.to_numeric(hit[KEY + key]).dropna().unique()) if KEY + key in hit else []
    return [(float(v), replace(finding, row={**finding.row, key: float(v)})) for v in values]


def over_values(finding: Finding, key: str, label: Callable[[float], str], fits: bool = False) -> tuple[str, str]:
    """The row's runs paired with the baseline at each value of `key` the folders hold (Fig. 8: the share
    of epochs before the switch; Fig. 17: the batch size), one paired interval per value. `fits`: where
    the baseline itself changes with the value (a batch size, a width), also whether its runs met the
    regime's criterion there, since a value at which ERM does not fit tests no claim of the paper."""
    parts, seeds = [], []
    for value, at_value in _each_value(finding, key):
        numbers = paired_row(at_value)
        fit = baseline_fits(at_value) if fits else None
        parts.append(f"{label(value)}: {verdict(numbers, finding.expect)}" + (f" ({fit})" if fit else ""))
        seeds.append(str(numbers["n"]) if numbers else "-")
    return f"{finding.note}; " + "; ".join(parts), ", ".join(seeds)


def over_switch_points(finding: Finding) -> tuple[str, str]:
    return over_values(finding, SWITCH_KEY, lambda point: f"at {100 * point:.0f}%")


def converges_over_rho(finding: Finding) -> tuple[str, str]:
    """Fig. 11's two stages: `converges` at each rho the folders hold, and the rho stage 1 (the first
    paper seed) chose on its validation split."""
    parts, seeds = [], []
    for rho, at_rho in _each_value(finding, RHO_KEY):
        text, n = converges(replace(at_rho, note=f"rho {rho:g}"))
        parts.append(text)
        seeds.append(n)
    runs, _ = collect([RESULTS / f for f in finding.folders])
    stage_1 = runs[runs["seed"] == next_stage.paper_seeds()[0]]  # stage 2's seeds would sway the choice
    summary, info = table.aggregate(_match(stage_1, finding.row), finding.metric)
    best = summary.loc[summary["best"], RHO] if "best" in summary and RHO in summary else []
    split = "validation split" if info.get("val_metric") else "test set"
    chosen = f"; stage 1's {split} chooses rho {float(best.iloc[0]):g}" if len(best) else ""
    return f"{finding.note}{chosen}. " + ". ".join(parts), ", ".join(seeds)


def converges(finding: Finding) -> tuple[str, str]:
    """Fig. 11: whether the row's runs reach zero training error (true labels, eval mode), and their paired test error."""
    runs, histories = collect([RESULTS / f for f in finding.folders])
    chosen = _match(runs[runs["status"] == "finished"], finding.row)
    reached = []
    for _, run in chosen.iterrows():
        zero = [e["epoch"] for e in histories[run["job"]] if e.get(TRAIN_EVAL_ERROR) == 0]
        reached.append(f"epoch {zero[0]}" if zero else f"never ({100 * run['final_train_eval_error']:.1f}% at the end)")
    numbers = paired_row(finding)
    word = "as the paper" if reached and all(r.startswith("epoch") for r in reached) else "not in every run"
    return (
        f"{finding.note}: {word}, 0.0% training error (true labels, eval mode) first at {', '.join(reached)}; "
        f"test error vs ERM: {verdict(numbers, finding.expect)}",
        str(len(reached)),
    )


def objective_trend(finding: Finding) -> tuple[str, str]:
    """Fig. 20: the epoch-mean training objective (loss + L2 term) of ERM and SAM over epochs."""
    runs, histories = collect([RESULTS / f for f in finding.folders])
    done = runs[runs["status"] == "finished"]
    # The row's runs and the baseline's, the two sides of the paired row with the same folders.
    chosen = pd.concat([_match(done, finding.row), done[paired.is_baseline(done, finding.baseline)]])
    ratios, rises, worst = [], [], []
    for _, run in chosen.iterrows():
        values = np.array([e["train/objective"] for e in histories[run["job"]] if "train/objective" in e])
        steps = np.diff(values) / values[:-1]
        ratios.append(values[-1] / values[0])
        rises.append(float((steps > 0).mean()))
        worst.append(float(steps.max()))
    word = "as the paper" if max(ratios) < 1 else "not in every run"
    text = (
        f"{word}: in each of {len(ratios)} runs (the row's and {finding.baseline}'s) the last epoch's objective is "
        f"{100 * min(ratios):.1f}-{100 * max(ratios):.1f}% of the first's; it rises from one epoch to the next in "
        f"{100 * min(rises):.0f}-{100 * max(rises):.0f}% of the epochs, by at most {100 * max(worst):.0f}%"
    )
    return text, str(len(ratios))


def _sharpness(finding: Finding) -> dict:
    """{(label, bn, rho): [(sharpness, suboptimality factor) per checkpoint]} of the committed sharpness.json."""
    payload = json.loads((RESULTS / finding.folders[0] / "sharpness.json").read_text())
    out: dict = {}
    for r in payload["results"]:
        out.setdefault((r["checkpoint"], r["bn"], r["rho"]), []).append((r["sharpness"], r.get("suboptimality_factor")))
    return out


def _range(values) -> str:
    low, high = min(values), max(values)
    return f"{low:.3g}" if low == high else f"{low:.3g}-{high:.3g}"


def sharpness_ranking(finding: Finding) -> tuple[str, str]:
    """Figs. 2, 3: the m-sharpness of ERM's and SAM's minima over rho, and the 10-step/1-step factor."""
    data = _sharpness(finding)
    rhos = sorted({rho for _, bn, rho in data if bn == "train"})
    apart = sum(
        min(s for s, _ in data[("SAM", "train", r)]) > max(s for s, _ in data[("ERM", "train", r)]) for r in rhos
    )
    pairs = ", ".join(
        f"{_range([s for s, _ in data[('SAM', 'train', r)]])} vs {_range([s for s, _ in data[('ERM', 'train', r)]])}"
        for r in rhos
    )
    factors = {bn: [f for (_, b, _), v in data.items() if b == bn for _, f in v if f] for bn in ("train", "eval")}
    n = len(data[("ERM", "train", rhos[0])])
    sharper = [
        np.mean([s for s, _ in data[("SAM", "train", r)]]) > np.mean([s for s, _ in data[("ERM", "train", r)]])
        for r in rhos
    ]
    ranking = (
        "opposite of the paper's same-batch ranking: SAM's minimum is the sharper"
        if all(sharper)
        else "as the paper's same-batch ranking: SAM's minimum is the flatter"
        if not any(sharper)
        else "mixed: SAM's minimum is the sharper at some rho and the flatter at others,"
    )
    text = (
        f"{ranking} at rho {', '.join(map(str, rhos))} "
        f"(train-mode BatchNorm, SAM vs ERM: {pairs}; ranges apart at {apart} of {len(rhos)}), while their test "
        f"errors are not separated (Fig. 1 row); 10-step over 1-step factor {_range(factors['train'])} in train "
        f"mode, {_range(factors['eval'])} in eval mode"
    )
    return text, f"{n} + {n}"


def batchnorm_modes(finding: Finding) -> tuple[str, str]:
    """Fig. 19 at the end of training: m-sharpness with batch statistics (train) vs running ones (eval)."""
    data = _sharpness(finding)
    top = max(rho for _, _, rho in data)
    parts = [
        f"{label} {_range([s for s, _ in data[(label, 'train', top)]])} (train) vs "
        f"{_range([s for s, _ in data[(label, 'eval', top)]])} (eval)"
        for label in ("ERM", "SAM")
    ]
    n = len(data[("ERM", "train", top)])
    return f"as the paper, at the end of training: at rho {top}, {'; '.join(parts)}", f"{n} + {n}"


def batchnorm_modes_over_training(finding: Finding) -> tuple[str, str]:
    """Fig. 19 over training: m-sharpness of one run's periodic checkpoints, eval-mode over train-mode
    BatchNorm at each, and at how many checkpoints the two differ by more than 1.5x either way."""
    payload = json.loads((RESULTS / finding.folders[0] / "sharpness.json").read_text())
    epoch = {c["label"]: c["epoch"] + 1 for c in payload["checkpoints"]}  # epochs done at the checkpoint
    values: dict[int, dict[str, float]] = {}
    for r in payload["results"]:
        values.setdefault(epoch[r["checkpoint"]], {})[r["bn"]] = r["sharpness"]
    epochs = sorted(values)
    ratios = [values[e]["eval"] / values[e]["train"] for e in epochs]
    apart = [e for e, r in zip(epochs, ratios) if abs(math.log(r)) > math.log(1.5)]
    word = "as the paper" if len(apart) == len(epochs) else f"as the paper at {len(apart)} of {len(epochs)} checkpoints"
    (rho,) = {r["rho"] for r in payload["results"]}
    (m,) = {r["m"] for r in payload["results"]}
    text = (
        f"{finding.note}; {word}: at rho {rho}, m = {m}, the eval-mode sharpness is {_range(ratios)}x the "
        f"train-mode one over {len(epochs)} checkpoints (epochs {epochs[0]}-{epochs[-1]}; train mode "
        f"{_range([values[e]['train'] for e in epochs])}, eval mode {_range([values[e]['eval'] for e in epochs])}); "
        f"more than 1.5x apart at epochs {', '.join(map(str, apart)) or 'none'}, "
        f"{ratios[-1]:.2f}x at the last"
    )
    return text, "1"


def same_basin(finding: Finding) -> tuple[str, str]:
    """Fig. 10: the training loss along w(t) = (1 - t) w_ERM + t w_ERM->SAM, BatchNorm recomputed at each t."""
    payload = json.loads((RESULTS / finding.folders[0] / "interpolation.json").read_text())
    inside = [p for p in payload["curve"] if 0 <= p["t"] <= 1]
    ends = (inside[0]["train_loss"], inside[-1]["train_loss"])
    barrier = max(p["train_loss"] for p in inside) - max(ends)
    word = "as the paper, no barrier" if barrier <= 0.01 * max(ends) else f"a barrier of {barrier:.3g}"
    text = (
        f"{word}: between t = {inside[0]['t']:.2f} and {inside[-1]['t']:.2f} the training loss stays within "
        f"{min(p['train_loss'] for p in inside):.3g}-{max(p['train_loss'] for p in inside):.3g} (ends {ends[0]:.3g}, "
        f"{ends[1]:.3g}); test error {100 * min(p['test_error'] for p in inside):.1f}-"
        f"{100 * max(p['test_error'] for p in inside):.1f}%; ||w_B - w_A|| = {payload['distance']:.2f}"
    )
    return text, "1"


def verdict(numbers: dict | None, expect: str) -> str:
    if numbers is None:
        return "not run"
    n, mean, low, high = numbers["n"], numbers["mean"], numbers["ci_low"], numbers["ci_high"]
    if n < 2 or math.isnan(low):
        return f"one seed: {mean:+.2f} points"
    if n == 2:  # two seeds' range is too weak a test to call anything separated
        return f"two seeds: {mean:+.2f} [{low:+.2f}, {high:+.2f}] points (range), {numbers['below']} of 2 lower"
    what = f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] points ({interval_name([n])}), {numbers['below']} of {n} lower"
    if low <= 0 <= high:
        word = "not separated, as the paper" if expect == "none" else "not separated"
    elif (expect == "lower" and high < 0) or (expect == "higher" and low > 0):
        word = "separated, as the paper"
    else:
        word = "separated, unlike the paper" if expect == "none" else "opposite"
    return f"{word}: {what}"


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def findings_table() -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for f in FINDINGS:
        if f.compute is not None:
            text, seeds = f.compute(f)
        elif f.row:
            numbers = paired_row(f)
            text = verdict(numbers, f.expect)
            seeds = str(numbers["n"]) if numbers else "-"
        else:
            text, seeds = ("analysis" if f.folders else "not run"), "-"
        if f.note and f.compute is None:
            text = f"{f.note}; {text}" if f.row else f"{text}: {f.note}" if text != "not run" else f.note
        data = ", ".join(f"`docs/results/{d}`" for d in f.folders) or "-"
        lines.append("| " + " | ".join(cell(c) for c in (f.figure, f.claim, text, seeds, f.command, data)) + " |")
    return "\n".join(lines)


def document_block(text: str) -> str:
    """The findings table as a document holds it, between its markers."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip()


if __name__ == "__main__":
    print(findings_table())
