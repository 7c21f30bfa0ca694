"""Choosing rho: on the validation split when the runs have one, ERM once in a rho grid, and the value
the Optuna preset minimizes. Job folders are written here as a multirun leaves them (results.json
and .hydra/overrides.yaml); tests/test_sweep.py runs real multiruns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from sam_lightning.reporting.cli import main as sweep_main
from sam_lightning.run.duplicates import find_duplicate, sweep_jobs

ROOT = Path(__file__).resolve().parents[1]
TARGET = {"erm": "sam_lightning.variants.ERM", "sam": "sam_lightning.variants.SAM"}


def _job(root: Path, num: int, method: str, rho: float, seed: int, status: str = "finished", **numbers) -> Path:
    overrides = [f"method={method}", f"method.rho={rho}", f"seed={seed}"]
    job = root / f"{num}_{','.join(sorted(overrides))}"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {"seed": seed, "method": {"_target_": TARGET[method], "rho": rho}}
    payload = {"status": status, "reason": None, "final_train_error": 0.01, **numbers, "config": config, "history": []}
    (job / "results.json").write_text(json.dumps(payload))
    return job


def _split(test: float, val: float | None, at_best_val: float | None = None, best_val: float | None = None) -> dict:
    """results.json numbers of a run; val=None: a run without a validation split (keys null)."""
    return {
        "final_test_error": test,
        "best_test_error": test - 0.05,
        "best_epoch": 3,
        "final_val_error": val,
        "final_val_loss": None if val is None else 2 * val,
        "best_val_error": best_val if best_val is not None or val is None else val - 0.01,
        "best_val_epoch": None if val is None else 2,
        "test_error_at_best_val": at_best_val,
    }


# Validation and test disagree: validation prefers rho = 0.1, the test set rho = 0.2.
GRID = {0.05: (0.30, 0.30), 0.1: (0.20, 0.25), 0.2: (0.25, 0.15)}  # rho: (val, test)


def _grid(root: Path, with_val: bool = True) -> Path:
    num = 0
    for seed in (0, 1, 2):
        _job(root, num, "erm", 0.0, seed, **_split(0.4 + 0.01 * seed, 0.45 + 0.01 * seed if with_val else None))
        num += 1
        for rho, (val, test) in GRID.items():
            noise = 0.002 * seed
            _job(
                root,
                num,
                "sam",
                rho,
                seed,
                **_split(test + noise, val + noise if with_val else None, at_best_val=0.5 - rho),
            )
            num += 1
    return root


def _summary(out: Path, method: str = "sam") -> dict:
    """{(method, rho): summary.csv row}; `method` where it is common to all rows (no column)."""
    with open(out / "summary.csv", newline="") as f:
        return {(r.get("method", method), r["method.rho"]): r for r in csv.DictReader(f)}


def _table_header(text: str) -> list[str]:
    return next(ln for ln in text.splitlines() if ln.startswith("method")).split("  ")


def test_rho_is_chosen_on_validation_when_the_runs_have_a_split(tmp_path, capsys):
    sweep = _grid(tmp_path / "val")
    assert sweep_main([str(sweep), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    text = capsys.readouterr().out
    rows = _summary(tmp_path / "out")
    assert [k for k, r in rows.items() if r["best_rho"] == "1"] == [("sam", "0.1")]  # not 0.2, the test set's pick
    assert {(r["metric"], r["chosen_on"]) for r in rows.values()} == {("final_test_error", "final_val_error")}
    # Both splits are in the table: the validation mean is the runs' own, the test mean is reported beside it.
    assert float(rows[("sam", "0.1")]["val_mean"]) == pytest.approx(0.202)
    assert float(rows[("sam", "0.1")]["mean"]) == pytest.approx(0.252)
    header = [c.strip() for c in _table_header(text) if c.strip()]
    assert header[2:5] == ["seeds", "val error % (range)", "test error % (range)"]  # 2-3 seeds: their range
    assert "best rho chosen on validation (val error" in text
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| val error % (range)" in md and "best rho chosen on validation" in md


def test_without_a_split_the_test_set_chooses_and_the_table_says_so(tmp_path, capsys):
    sweep = _grid(tmp_path / "test", with_val=False)
    assert sweep_main([str(sweep), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    text = capsys.readouterr().out
    rows = _summary(tmp_path / "out")
    assert [k for k, r in rows.items() if r["best_rho"] == "1"] == [("sam", "0.2")]
    assert {r["chosen_on"] for r in rows.values()} == {"final_test_error"} and "val_mean" not in rows[("sam", "0.2")]
    assert "val error" not in text and "best rho chosen on the test set (test error)" in text


def test_best_metric_with_a_split_reports_the_test_error_at_the_best_validation_epoch(tmp_path, capsys):
    sweep = tmp_path / "best"
    # best_val_error prefers rho = 0.05, final_val_error rho = 0.1; best_test_error (min over epochs of
    # the test error) would say 0.2.
    values = {
        0.05: dict(val=0.30, best_val=0.10, test=0.30, at_best_val=0.33),
        0.1: dict(val=0.20, best_val=0.18, test=0.25, at_best_val=0.27),
        0.2: dict(val=0.25, best_val=0.22, test=0.10, at_best_val=0.21),
    }
    for seed in (0, 1):
        for i, (rho, v) in enumerate(values.items()):
            _job(
                sweep,
                3 * seed + i,
                "sam",
                rho,
                seed,
                **_split(v["test"] + 0.01 * seed, v["val"], v["at_best_val"] + 0.01 * seed, v["best_val"]),
            )
    assert sweep_main([str(sweep), "--out", str(tmp_path / "out"), "--no-plots", "--metric", "best"]) == 0
    text = capsys.readouterr().out
    rows = _summary(tmp_path / "out")
    assert {(r["metric"], r["chosen_on"]) for r in rows.values()} == {("test_error_at_best_val", "best_val_error")}
    assert [k for k, r in rows.items() if r["best_rho"] == "1"] == [("sam", "0.05")]
    assert float(rows[("sam", "0.05")]["mean"]) == pytest.approx(
        0.335
    )  # early stopping on validation, not min over epochs
    header = [c.strip() for c in _table_header(text) if c.strip()]
    assert header[1:4] == ["seeds", "best val error % (range)", "test error at best val % (range)"]
    assert "33.50 [33.00, 34.00]" in text
    # A run without a split has no test error at a best validation epoch: named, not silently left out.
    _job(sweep, 99, "sam", 0.05, 2, **_split(0.01, None))
    assert sweep_main([str(sweep), "--out", str(tmp_path / "out"), "--no-plots", "--metric", "best"]) == 0
    text = capsys.readouterr().out
    assert "not in the table (1 finished job(s) without test_error_at_best_val, e.g. no validation split): 99_" in text
    assert _summary(tmp_path / "out")[("sam", "0.05")]["n_seeds"] == "2"


def test_the_best_test_error_key_reports_the_lowest_test_error_rho_still_chosen_on_validation(tmp_path, capsys):
    # `--metric best` with a split is early stopping on validation; asking for the key best_test_error is
    # asking for the lowest test error over epochs (the paper's reading of its label-noise figure).
    sweep = tmp_path / "keys"
    values = {0.05: dict(best_val=0.10, test=0.30), 0.2: dict(best_val=0.22, test=0.10)}
    for seed in (0, 1):
        for i, (rho, v) in enumerate(values.items()):
            _job(sweep, 2 * seed + i, "sam", rho, seed, **_split(v["test"] + 0.01 * seed, 0.3, 0.4, v["best_val"]))
    assert sweep_main([str(sweep), "--out", str(tmp_path / "out"), "--no-plots", "--metric", "best_test_error"]) == 0
    rows = _summary(tmp_path / "out")
    assert {(r["metric"], r["chosen_on"]) for r in rows.values()} == {("best_test_error", "best_val_error")}
    assert float(rows[("sam", "0.2")]["mean"]) == pytest.approx(0.055)  # min over epochs: test - 0.05
    assert [k for k, r in rows.items() if r["best_rho"] == "1"] == [("sam", "0.05")]  # validation chose
    assert "best test error % (range)" in capsys.readouterr().out


def test_the_train_column_is_in_percent_whatever_the_metric(tmp_path, capsys):
    # A table of a fraction that is not an error (flipped labels fitted) keeps the train error in percent.
    for seed in (0, 1):
        _job(tmp_path / "fit", seed, "sam", 0.1, seed, **_split(0.3, None), final_train_noisy_fit=0.4 + 0.1 * seed)
    assert (
        sweep_main(
            [str(tmp_path / "fit"), "--out", str(tmp_path / "out"), "--no-plots", "--metric", "final_train_noisy_fit"]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    header, row = [c.strip() for c in lines[rule - 1].split("  ") if c.strip()], lines[rule + 1]
    assert header[-1] == "train error % (augmented, during the epoch)" and row.split()[-1] == "1.00"  # 0.01
    assert "0.45 [0.4, 0.5]" in row


def test_rows_without_a_split_are_not_ranked_beside_rows_with_one(tmp_path):
    sweep = _grid(tmp_path / "mixed")
    # The test set's favourite, rerun without a validation split, would win on test: it cannot win on validation.
    for seed in (0, 1, 2):
        _job(sweep, 100 + seed, "sam", 0.3, seed, **_split(0.01, None))
    assert sweep_main([str(sweep), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    rows = _summary(tmp_path / "out")
    assert [k for k, r in rows.items() if r["best_rho"] == "1"] == [("sam", "0.1")]
    assert rows[("sam", "0.3")]["val_mean"] == ""


def test_erm_in_a_rho_grid_is_one_row_never_best_and_skipped_jobs_are_counted(tmp_path, capsys):
    sweep = tmp_path / "mixed_grid"
    num = 0
    for rho in (0.05, 0.1):
        for seed in (0, 1):
            # ERM is the same run at every rho: identical numbers (runs from before the skip), or skipped.
            if rho == 0.1 and seed == 1:
                _job(
                    sweep,
                    num,
                    "erm",
                    rho,
                    seed,
                    status="skipped",
                    reason="duplicate of job 1 (method=erm method.rho=0.05)",
                )
            else:
                _job(sweep, num, "erm", rho, seed, **_split(0.40 + 0.01 * seed, None))
            _job(sweep, num + 1, "sam", rho, seed, **_split(0.30 - rho + 0.01 * seed, None))
            num += 2
    assert sweep_main([str(sweep), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    text = capsys.readouterr().out
    rows = _summary(tmp_path / "out")
    assert set(rows) == {("erm", ""), ("sam", "0.05"), ("sam", "0.1")}
    erm = rows[("erm", "")]
    assert (erm["n_seeds"], erm["n_runs"], erm["best_rho"]) == ("2", "3", "0")  # seed 0's two runs count once
    assert float(erm["mean"]) == pytest.approx(0.405) and (
        float(erm["ci_low"]),
        float(erm["ci_high"]),
    ) == pytest.approx((0.40, 0.41))
    assert [k for k, r in rows.items() if r["best_rho"] == "1"] == [("sam", "0.1")]
    assert sum(1 for ln in text.splitlines() if ln.startswith("erm")) == 1
    assert "1 job(s) skipped" in text and "excluded" not in text and erm["excluded"] == ""
    assert "  method=erm: seed 0 (2 runs, identical)" in text.splitlines()


def test_a_seed_run_twice_is_named_under_the_table_with_how_far_its_runs_end_apart(tmp_path, capsys):
    # Two code versions of one ERM seed: averaged into one seed as before, and now said so with the gap.
    sweep = tmp_path / "two_versions"
    _job(sweep, 0, "erm", 0.0, 0, **_split(0.40, None))
    _job(sweep, 1, "erm", 0.0, 0, **_split(0.4143, None))
    _job(sweep, 2, "erm", 0.0, 1, **_split(0.45, None))
    _job(sweep, 3, "sam", 0.1, 0, **_split(0.38, None))
    _job(sweep, 4, "sam", 0.1, 1, **_split(0.44, None))
    assert sweep_main([str(sweep), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    lines = capsys.readouterr().out.splitlines()
    note = lines.index("seeds run more than once (their runs averaged, counted as one seed; the folders hold both):")
    assert lines[note + 1 :][:2] == ["  method=erm: seed 0 (2 runs, 1.43 points apart)", ""]
    rows = _summary(tmp_path / "out")
    assert rows[("erm", "")]["repeated_seeds"] == "0 (2 runs, 1.43 points apart)"
    assert rows[("sam", "0.1")]["repeated_seeds"] == ""


def test_find_duplicate_names_the_erm_job_at_the_grids_first_rho():
    sweep = ["method=erm,sam", "method.rho=0.05,0.1", "seed=0,1"]
    jobs = sweep_jobs(sweep)
    assert jobs[2] == ["method=erm", "method.rho=0.1", "seed=0"] and len(jobs) == 8  # Hydra's own enumeration

    def dup(num):
        job = jobs[num]
        return find_duplicate(sweep, job, "erm" if "method=erm" in job else "sam", num)

    assert [dup(i) is not None for i in range(8)] == [False, False, True, True, False, False, False, False]
    d = dup(3)
    assert (d.job_num, d.overrides, d.describe()) == (
        1,
        ("method=erm", "method.rho=0.05", "seed=1"),
        "job 1 (method=erm method.rho=0.05 seed=1)",
    )
    # The job must be the sweep's job of its number (another command's multirun.yaml never skips it).
    assert find_duplicate(sweep, jobs[3], "erm", 2) is None
    assert find_duplicate(sweep, ["method=erm", "method.rho=0.2", "seed=0"], "erm") is None
    # Without a rho axis, or with one value, nothing repeats.
    assert (
        find_duplicate(
            ["method=erm,sam", "method.rho=0.1", "seed=0,1"], ["method=erm", "method.rho=0.1", "seed=1"], "erm", 1
        )
        is None
    )
    # A preset's axes (hydra.sweeper.params) come first, as Hydra's basic sweeper merges them;
    # a command-line value replaces a preset's.
    preset = ["method.rho=0.025,0.05,0.1", "seed=0,1,2", "+sweep=rho_grid", "method=erm,sam"]
    d = find_duplicate(preset, ["method.rho=0.1", "seed=2", "+sweep=rho_grid", "method=erm"], "erm", 16)
    assert d is not None and d.job_num == 4 and d.overrides[0] == "method.rho=0.025"
    assert sweep_jobs(["method.rho=0.1,0.2", "method.rho=0.3,0.4"]) == [["method.rho=0.3"], ["method.rho=0.4"]]


def test_random_perturbations_in_a_rho_grid_skip_their_repeated_jobs_as_erm_does():
    # Gaussian noise (random's default) draws with sigma alone: its jobs at a second rho repeat the
    # first rho's, as ERM's do; noise=sphere draws at radius rho, and SAM uses rho: they all train.
    from sam_lightning.run.multirun_progress import skipped_jobs

    sweep = ["method=erm,random,sam", "method.rho=0.05,0.1", "seed=0"]
    jobs = sweep_jobs(sweep)
    random = {"_target_": "sam_lightning.variants.RandomPerturbation", "rho": 0.1, "noise": "gaussian", "sigma": 0.01}
    sam = {"_target_": "sam_lightning.variants.SAM", "rho": 0.1}
    d = find_duplicate(sweep, jobs[3], random, 3)
    assert jobs[3] == ["method=random", "method.rho=0.1", "seed=0"] and d is not None
    assert (d.job_num, d.overrides) == (2, ("method=random", "method.rho=0.05", "seed=0"))
    assert find_duplicate(sweep, jobs[3], {**random, "noise": "sphere"}, 3) is None
    assert find_duplicate(sweep, jobs[5], sam, 5) is None
    assert find_duplicate(sweep, jobs[3], "random", 3) is not None  # the method's name alone: its class's defaults
    # The progress line's ETA counts the same jobs out (each job's method read from its overrides).
    config = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
                "overrides": {"task": sweep},
            }
        }
    )
    assert skipped_jobs(config) == {1, 3}
    sphere = OmegaConf.create({"hydra": {**config.hydra, "overrides": {"task": [*sweep, "method.noise=sphere"]}}})
    assert skipped_jobs(sphere) == {1}


def test_the_optimized_value_is_the_validation_error_when_there_is_one():
    from train import objective

    assert objective({"status": "finished", "final_val_error": 0.2, "final_test_error": 0.3}) == 0.2
    assert objective({"status": "finished", "final_val_error": None, "final_test_error": 0.3}) == 0.3
    assert objective({"status": "finished", "final_test_error": 0.3}) == 0.3
    assert objective({"status": "diverged", "final_val_error": 0.2}) == float("inf") and objective(None) == float("inf")


def test_optuna_preset_holds_out_a_validation_split():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")
    from conftest import compose_config

    assert compose_config(["hparams_search=rho_optuna"]).data.val_fraction == 0.1
    assert compose_config(["hparams_search=rho_optuna", "experiment=smoke"]).data.val_fraction == 0.1
    assert compose_config(["hparams_search=rho_optuna", "data.val_fraction=0"]).data.val_fraction == 0


def test_where_keeps_the_matching_jobs_so_one_seed_can_choose_rho(tmp_path, capsys):
    # Seed 0 alone: the first stage of a rho choice ("rho chosen on seed 0's validation split").
    sweep = _grid(tmp_path / "val")
    for seed in (1, 2):  # seeds 1 and 2 would pick rho 0.05 on their mean; seed 0 alone still picks 0.1
        for job in sweep.glob(f"*method.rho=0.05,method=sam,seed={seed}"):
            payload = json.loads((job / "results.json").read_text())
            payload["final_val_error"] = 0.01
            (job / "results.json").write_text(json.dumps(payload))
    out = tmp_path / "out"
    assert sweep_main([str(sweep), "--where", "seed=0", "--out", str(out), "--no-plots"]) == 0
    assert "sweep: " in (text := capsys.readouterr().out) and ", where seed=0" in text
    rows = _summary(out)
    assert {r["n_seeds"] for r in rows.values()} == {"1"} and {r["seeds"] for r in rows.values()} == {"0"}
    assert [k for k, r in rows.items() if r["best_rho"] == "1"] == [("sam", "0.1")]
    assert float(rows[("sam", "0.1")]["val_mean"]) == pytest.approx(0.20)
    assert sweep_main([str(sweep), "--out", str(out), "--no-plots"]) == 0  # all seeds: rho 0.05
    assert [k for k, r in _summary(out).items() if r["best_rho"] == "1"] == [("sam", "0.05")]
    # Numbers compare as numbers, keys may repeat, and ERM (no rho) is left out by a rho condition.
    capsys.readouterr()
    assert sweep_main([str(sweep), "--where", "method.rho=0.10", "--where", "seed=2", "--out", str(out)]) == 0
    assert "common overrides: method=sam method.rho=0.1" in capsys.readouterr().out
    with open(out / "summary.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert row["seeds"] == "2" and float(row["mean"]) == pytest.approx(0.254)
    # A list of values, as a Hydra sweep writes it: any of them.
    capsys.readouterr()
    assert sweep_main([str(sweep), "--where", "seed=0,2", "--out", str(out), "--no-plots"]) == 0
    assert {r["seeds"] for r in _summary(out).values()} == {"0 2"}


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("seed", "give KEY=VALUE, KEY one of seed, method, method.rho"),
        ("lr=0.1", "KEY one of"),
        ("seed=7", "no job has seed=7"),
    ],
)
def test_where_bad_input_is_one_line(tmp_path, capsys, where, message):
    sweep = _grid(tmp_path / "val")
    assert sweep_main([str(sweep), "--where", where, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_where_with_export_is_refused_in_one_line(tmp_path, capsys):
    sweep = _grid(tmp_path / "val")
    with pytest.raises(SystemExit) as stop:
        sweep_main([str(sweep), "--where", "seed=0", "--export", str(tmp_path / "kept")])
    assert stop.value.code == 2 and "--where chooses table rows" in capsys.readouterr().err
    assert not (tmp_path / "kept").exists()
