"""Paired differences to a baseline (`sweep.py --paired seed --baseline erm`) and results kept as data
(`sweep.py --export`, folders of bare results.json files). Job folders are written here as a
multirun leaves them; tests/test_sweep.py checks both on a real multirun."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from sam_lightning.reporting.cli import main as sweep_main
from sam_lightning.reporting.stats import bootstrap_ci

TARGET = {"erm": "sam_lightning.variants.ERM", "sam": "sam_lightning.variants.SAM"}


def _job(
    root: Path,
    num: int,
    method: str,
    seed: int,
    rho: float = 0.05,
    extra: dict | None = None,
    hydra: bool = True,
    recorded: bool = False,
    **numbers,
) -> Path:
    """A job folder: results.json, and .hydra/overrides.yaml (hydra) or the overrides in results.json (recorded)."""
    settings = {"method": method, "method.rho": rho, "seed": seed, **(extra or {})}
    overrides = [f"{k}={v}" for k, v in settings.items()]
    job = root / f"{num}_{','.join(sorted(overrides))}"
    job.mkdir(parents=True)
    if hydra:
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {
        "seed": seed,
        "method": {"_target_": TARGET[method], "rho": rho},
        "data": {"batch_size": 64},
        "paths": {"output_dir": str(job)},
    }
    for key, value in (extra or {}).items():
        section, name = key.split(".")
        config.setdefault(section, {})[name] = value
    payload = {
        "status": "finished",
        "reason": None,
        "final_train_error": 0.0,
        **numbers,
        **({"overrides": overrides} if recorded else {}),
        "config": config,
        "history": [],
    }
    (job / "results.json").write_text(json.dumps(payload))
    return job


def _numbers(final: float, at_best_val: float) -> dict:
    """A run with a validation split: its final test error and its test error at the best validation epoch."""
    return {
        "final_test_error": final,
        "best_test_error": final - 0.05,
        "final_val_error": final + 0.01,
        "best_val_error": final - 0.01,
        "best_val_epoch": 3,
        "test_error_at_best_val": at_best_val,
    }


# test_error_at_best_val per seed: ERM on 5 seeds, SAM at two rho values; SAM at rho 0.1 has a sixth
# seed that ERM lacks. The final test errors disagree on purpose (SAM always worse there).
ERM = [0.40, 0.42, 0.38, 0.45, 0.41]
SAM = {0.05: [0.38, 0.43, 0.35, 0.40, 0.39], 0.1: [0.41, 0.40, 0.36, 0.44, 0.40, 0.30]}


def _paired_grid(root: Path) -> Path:
    num = 0
    for seed, value in enumerate(ERM):
        _job(root, num, "erm", seed, **_numbers(0.30, value))
        num += 1
    for rho, values in SAM.items():
        for seed, value in enumerate(values):
            _job(root, num, "sam", seed, rho, **_numbers(0.50, value))
            num += 1
    return root


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_paired_table_differences_per_seed_mean_interval_and_count(tmp_path, capsys):
    sweep = _paired_grid(tmp_path / "grid")
    out = tmp_path / "out"
    assert (
        sweep_main(
            [str(sweep), "--out", str(out), "--no-plots", "--metric", "best", "--paired", "seed", "--baseline", "erm"]
        )
        == 0
    )
    text = capsys.readouterr().out
    rows = {r["method.rho"]: r for r in _csv(out / "paired.csv")}
    assert set(rows) == {"0.05", "0.1"}  # every row but the baseline's
    for rho, values in SAM.items():
        diffs = np.array(values[:5]) - np.array(ERM)  # the table's metric: test error at the best validation epoch
        row = rows[str(rho)]
        assert (row["metric"], row["baseline"], row["paired_on"], row["n_pairs"]) == (
            "test_error_at_best_val",
            "erm",
            "seed",
            "5",
        )
        assert [float(row[f"diff_seed_{s}"]) for s in range(5)] == pytest.approx(diffs.tolist())
        assert float(row["mean"]) == pytest.approx(diffs.mean())
        assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx(
            bootstrap_ci(diffs)
        )  # the project's one interval
        assert int(row["n_below"]) == int((diffs < 0).sum())
    assert rows["0.1"]["unpaired"] == "5" and rows["0.05"]["unpaired"] == ""

    section = text[text.index("paired differences to erm (same seed)") :]
    line = next(ln for ln in section.splitlines() if ln.startswith("sam") and " 0.05 " in ln).split()
    d = (np.array(SAM[0.05]) - np.array(ERM)) * 100
    lo, hi = (100 * v for v in bootstrap_ci(d / 100))
    assert line[2:7] == [f"{v:+.2f}" for v in d]
    assert line[7:10] == [f"{d.mean():+.2f}", f"[{lo:+.2f},", f"{hi:+.2f}]"]
    assert line[10:] == ["4", "of", "5"]
    header = next(ln for ln in section.splitlines() if ln.startswith("method"))
    assert "test error at best val minus erm (pp, 95% CI)" in header and "seed 4" in header and "seed 5" not in header
    assert "method=sam method.rho=0.1: seed 5 with no erm run, left out." in section
    assert "2-3 seeds" not in section  # five pairs: a bootstrap interval, not a range
    md = (out / "summary.md").read_text()
    assert "## Paired differences to erm (same seed)" in md and "| sam      | 0.05" in md
    assert "paired.csv" in text.splitlines()[-1]


def test_with_three_seeds_a_footnote_says_the_interval_is_their_range(tmp_path, capsys):
    sweep = tmp_path / "three"
    for seed in range(3):
        _job(sweep, 2 * seed, "erm", seed, final_test_error=0.40 + 0.01 * seed)
        _job(sweep, 2 * seed + 1, "sam", seed, final_test_error=0.39 + 0.03 * seed)
    assert (
        sweep_main([str(sweep), "--out", str(tmp_path / "out"), "--no-plots", "--paired", "seed", "--baseline", "erm"])
        == 0
    )
    text = capsys.readouterr().out
    assert "minus erm (pp, range)" in text and "range: [min, max] over seeds (with 2-3 seeds" in text
    assert "95% CI" not in text
    row = _csv(tmp_path / "out" / "paired.csv")[0]
    assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx((-0.01, 0.03))
    assert row["metric"] == "final_test_error" and row["n_below"] == "1"


def test_rows_pair_with_the_baseline_that_shares_their_other_keys(tmp_path, capsys):
    sweep = tmp_path / "batch"
    num = 0
    for batch, shift in ((64, 0.0), (16, 0.10)):
        for seed in range(2):
            _job(sweep, num, "erm", seed, extra={"data.batch_size": batch}, final_test_error=0.40 + shift + 0.01 * seed)
            _job(
                sweep,
                num + 1,
                "sam",
                seed,
                extra={"data.batch_size": batch},
                final_test_error=0.38 + shift + 0.02 * seed,
            )
            num += 2
    _job(sweep, num, "sam", 0, extra={"data.batch_size": 8}, final_test_error=0.1)  # no ERM at batch 8
    assert (
        sweep_main([str(sweep), "--out", str(tmp_path / "out"), "--no-plots", "--paired", "seed", "--baseline", "erm"])
        == 0
    )
    text = capsys.readouterr().out
    rows = {r["data.batch_size"]: r for r in _csv(tmp_path / "out" / "paired.csv")}
    # Each batch size against ERM at that batch size (rho, which ERM lacks, is not matched).
    assert [float(rows["16"][f"diff_seed_{s}"]) for s in (0, 1)] == pytest.approx([-0.02, -0.01])
    assert [float(rows["64"][f"diff_seed_{s}"]) for s in (0, 1)] == pytest.approx([-0.02, -0.01])
    assert rows["16"]["baseline_row"] == "data.batch_size=16 method=erm"
    assert rows["8"]["n_pairs"] == "0" and rows["8"]["note"] == "no erm row with the same data.batch_size, method.rho"
    assert "vs erm" in text  # two baseline rows: the table names the one each row is paired with
    assert "not paired: no erm row with the same data.batch_size, method.rho." in text


def test_bad_paired_input_is_one_line(tmp_path, capsys):
    sweep = _paired_grid(tmp_path / "grid")
    out = ["--out", str(tmp_path / "out"), "--no-plots"]
    assert sweep_main([str(sweep), *out, "--paired", "seed", "--baseline", "sam_m128"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --baseline sam_m128: no runs of that method; the methods here: erm, sam\n"
    assert sweep_main([str(sweep), *out, "--paired", "data.seed", "--baseline", "erm"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --paired data.seed: no run has that key; the runs have: seed, method, method.rho\n"
    assert not (tmp_path / "out").exists()  # refused before any table
    with pytest.raises(SystemExit) as exit_:
        sweep_main([str(sweep), *out, "--paired", "seed"])
    assert exit_.value.code == 2 and "--paired and --baseline go together" in capsys.readouterr().err


def test_a_folder_of_bare_results_json_makes_the_same_table(tmp_path, capsys):
    # The overrides recorded in results.json stand in for .hydra/overrides.yaml.
    hydra, bare = tmp_path / "hydra", tmp_path / "bare"
    for seed in range(2):
        for root, kw in ((hydra, {"hydra": True}), (bare, {"hydra": False, "recorded": True})):
            _job(root, 2 * seed, "erm", seed, extra={"data.batch_size": 32}, final_test_error=0.4 + 0.01 * seed, **kw)
            _job(
                root,
                2 * seed + 1,
                "sam",
                seed,
                0.1,
                extra={"data.batch_size": 32},
                final_test_error=0.3 + 0.01 * seed,
                **kw,
            )
    texts = []
    for root in (hydra, bare):
        assert sweep_main([str(root), "--out", str(tmp_path / f"out_{root.name}"), "--no-plots"]) == 0
        texts.append(capsys.readouterr().out.split("\n", 1)[1].rsplit("\nwrote", 1)[0])
    assert texts[0] == texts[1] and "common overrides: data.batch_size=32" in texts[0]
    assert (tmp_path / "out_hydra" / "summary.csv").read_text() == (tmp_path / "out_bare" / "summary.csv").read_text()


def test_export_copies_results_json_only_and_adds_the_overrides_of_older_runs(tmp_path, capsys):
    sweep = tmp_path / "multirun" / "grid"
    jobs = [
        _job(sweep, i, m, s, extra={"data.batch_size": 32}, final_test_error=0.3 + 0.01 * i)
        for i, (m, s) in enumerate([("erm", 0), ("sam", 0), ("erm", 1), ("sam", 1)])
    ]
    (jobs[0] / "checkpoints").mkdir()
    (jobs[0] / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (jobs[0] / "train.log").write_text("log")
    running = _job(sweep, 4, "sam", 2, extra={"data.batch_size": 32}, final_test_error=0.3)
    payload = json.loads((running / "results.json").read_text())
    (running / "results.json").write_text(json.dumps({**payload, "status": "running"}))
    (sweep / "summary").mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    target = tmp_path / "docs" / "results" / "grid"

    assert sweep_main([str(sweep), "--export", str(target)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == f"exported 4 job(s) to {target}: 4 new, 0 updated, 0 unchanged"
    assert f"  {running.name}: running" in text
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == sorted(f"{j.name}/results.json" for j in jobs)
    copied = json.loads((target / jobs[1].name / "results.json").read_text())
    assert copied["overrides"] == yaml.safe_load((jobs[1] / ".hydra" / "overrides.yaml").read_text())

    # The exported folder is the sweep's table (less the job still running).
    shutil.rmtree(running)
    assert sweep_main([str(sweep), "--out", str(tmp_path / "a"), "--no-plots"]) == 0
    assert sweep_main([str(target), "--out", str(tmp_path / "b"), "--no-plots"]) == 0
    capsys.readouterr()
    assert (tmp_path / "a" / "summary.csv").read_text() == (tmp_path / "b" / "summary.csv").read_text()

    # Again: nothing changes. A run finished since is added.
    _job(sweep, 5, "sam", 2, extra={"data.batch_size": 32}, final_test_error=0.3)
    assert sweep_main([str(sweep), "--export", str(target)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"exported 5 job(s) to {target}: 1 new, 0 updated, 4 unchanged"


def test_export_refuses_another_run_under_the_same_name_and_a_target_inside_the_sweep(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    _job(first, 0, "sam", 0, final_test_error=0.3)
    _job(second, 0, "sam", 0, final_test_error=0.2)  # the same folder name, another run (another output_dir)
    target = tmp_path / "results"
    assert sweep_main([str(first), "--export", str(target)]) == 0
    before = (target / "0_method.rho=0.05,method=sam,seed=0" / "results.json").read_text()
    assert sweep_main([str(second), "--export", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds another run (its config differs)" in err and err.count("\n") == 1
    assert (target / "0_method.rho=0.05,method=sam,seed=0" / "results.json").read_text() == before
    assert sweep_main([str(first), "--export", str(first / "export")]) == 2
    assert "is inside" in capsys.readouterr().err and not (first / "export").exists()


def test_a_setting_as_baseline_pairs_each_method_with_its_own_runs_at_that_setting(tmp_path, capsys):
    # float32 runs that never overrode the precision (read from their config) against bf16 runs that did
    for seed, (erm, sam) in enumerate([(0.40, 0.38), (0.42, 0.39)]):
        for method, error in (("erm", erm), ("sam", sam)):
            job = _job(tmp_path / "fp32", seed * 2 + (method == "sam"), method, seed, final_test_error=error)
            payload = json.loads((job / "results.json").read_text())
            payload["config"]["trainer"] = {"precision": "32-true"}
            (job / "results.json").write_text(json.dumps(payload))
            bf16 = {"trainer.precision": "bf16-mixed"}
            _job(
                tmp_path / "bf16",
                seed * 2 + (method == "sam"),
                method,
                seed,
                extra=bf16,
                final_test_error=error + 0.01 * (1 + seed),
            )
    code = sweep_main([str(tmp_path), "--paired", "seed", "--baseline", "trainer.precision=32-true", "--no-plots"])
    assert code == 0
    rows = list(csv.DictReader(open(tmp_path / "summary" / "paired.csv")))
    assert sorted((r["method"], r["baseline_row"], r["diff_seed_0"], r["diff_seed_1"]) for r in rows) == [
        ("erm", "method=erm trainer.precision=32-true", "0.01", "0.02"),
        ("sam", "method=sam trainer.precision=32-true method.rho=0.05", "0.01", "0.02"),
    ]
    assert (
        sweep_main([str(tmp_path), "--paired", "seed", "--baseline", "trainer.precision=16-mixed", "--no-plots"]) == 2
    )
    assert "no run has trainer.precision=16-mixed; its values here: 32-true, bf16-mixed" in capsys.readouterr().err


def test_the_findings_table_pairs_a_setting_baseline_as_sweep_py_does(tmp_path, monkeypatch):
    # Fig. 4's row: 10-step SAM against 1-step SAM runs that never overrode ascent_steps (read from
    # their config), paired by seed; ERM runs in the same folders are neither side.
    from sam_lightning.reporting import findings

    for seed, (erm, one, ten) in enumerate([(0.44, 0.40, 0.41), (0.45, 0.42, 0.45), (0.43, 0.40, 0.42)]):
        _job(tmp_path / "one", 2 * seed, "erm", seed, final_test_error=erm)
        job = _job(tmp_path / "one", 2 * seed + 1, "sam", seed, final_test_error=one)
        payload = json.loads((job / "results.json").read_text())
        payload["config"]["method"]["ascent_steps"] = 1
        (job / "results.json").write_text(json.dumps(payload))
        _job(tmp_path / "ten", seed, "sam", seed, extra={"method.ascent_steps": 10}, final_test_error=ten)
    monkeypatch.setattr(findings, "RESULTS", tmp_path)
    row = findings.Finding(
        "Fig. 4", "claim", "command", ("one", "ten"), {"method.ascent_steps": 10}, baseline="method.ascent_steps=1"
    )
    numbers = findings.paired_row(row)
    assert (numbers["n"], numbers["below"]) == (3, 0)
    assert (numbers["mean"], numbers["ci_low"], numbers["ci_high"]) == pytest.approx((2.0, 1.0, 3.0))
    assert findings.verdict(numbers, "higher").startswith("separated, as the paper: +2.00 [+1.00, +3.00]")
    assert findings.verdict(numbers, "lower").startswith("opposite")
    assert findings.verdict(numbers, "none").startswith("separated, unlike the paper")
    two = {**numbers, "n": 2}  # two seeds: their numbers, no verdict
    assert findings.verdict(two, "higher") == "two seeds: +2.00 [+1.00, +3.00] points (range), 0 of 2 lower"


def test_the_findings_switch_row_pairs_each_switch_point_with_erm(tmp_path, monkeypatch):
    # Fig. 8's rows: one paired interval per switch point the folders hold, each against ERM of the same
    # seed; runs of another m at the same points are neither side.
    from sam_lightning.reporting import findings

    for seed, erm in enumerate([0.44, 0.45, 0.43]):
        _job(tmp_path / "erm", seed, "erm", seed, final_test_error=erm)
        for k, (point, shift) in enumerate([(0.25, -0.02), (0.75, 0.01)]):
            switched = {"method.m": 4, "method.switch_at": point}
            _job(tmp_path / "switch", 10 * seed + k, "sam", seed, extra=switched, final_test_error=erm + shift)
            other_m = {"method.m": 16, "method.switch_at": point}
            _job(tmp_path / "switch", 10 * seed + k + 5, "sam", seed, extra=other_m, final_test_error=0.9)
    _job(tmp_path / "switch", 99, "sam", 0, extra={"method.m": 4, "method.switch_at": 0.5}, final_test_error=0.40)
    monkeypatch.setattr(findings, "RESULTS", tmp_path)
    row = findings.Finding("Fig. 8", "claim", "command", ("erm", "switch"), {"method": "sam", "method.m": 4}, note="n")
    text, seeds = findings.over_switch_points(row)
    assert text == (
        "n; at 25%: separated, as the paper: -2.00 [-2.00, -2.00] points (range), 3 of 3 lower; "
        "at 50%: one seed: -4.00 points; at 75%: opposite: +1.00 [+1.00, +1.00] points (range), 0 of 3 lower"
    )
    assert seeds == "3, 1, 3"


def test_the_findings_rows_over_a_shared_setting_pair_each_value_with_erm_at_that_value(tmp_path, monkeypatch):
    # Fig. 17's row: SAM at each batch size against ERM at the same batch size. With one batch size in
    # the folder the paired table has no batch-size column (it varies nowhere), and the row still pairs.
    from sam_lightning.reporting import findings

    def batch(size, shift):
        for seed, erm in enumerate([0.44, 0.45, 0.43]):
            _job(
                tmp_path / "runs", 10 * size + seed, "erm", seed, extra={"data.batch_size": size}, final_test_error=erm
            )
            sam = {"data.batch_size": size}
            _job(tmp_path / "runs", 10 * size + seed + 5, "sam", seed, extra=sam, final_test_error=erm + shift)

    monkeypatch.setattr(findings, "RESULTS", tmp_path)
    row = findings.Finding("Fig. 17", "claim", "command", ("runs",), {"method": "sam"}, expect="none", note="n")

    def over_batch():
        return findings.over_values(row, "data.batch_size", lambda b: f"at batch {b:g}")

    batch(128, -0.01)
    text, seeds = over_batch()
    assert text == "n; at batch 128: separated, unlike the paper: -1.00 [-1.00, -1.00] points (range), 3 of 3 lower"
    assert seeds == "3"
    # A value no run has is not run, although the table has no column to tell it from batch 128 by.
    assert findings.paired_row(replace(row, row={"method": "sam", "data.batch_size": 512})) is None
    batch(256, 0.02)
    text, seeds = over_batch()
    assert text == (
        "n; at batch 128: separated, unlike the paper: -1.00 [-1.00, -1.00] points (range), 3 of 3 lower; "
        "at batch 256: separated, unlike the paper: +2.00 [+2.00, +2.00] points (range), 0 of 3 lower"
    )
    assert seeds == "3, 3"


def test_a_findings_row_narrows_on_every_shared_setting_even_after_one_no_run_sets(tmp_path, monkeypatch):
    # A row naming a setting no run sets (model.width) before one all runs share (batch 128): the unset
    # key passes and the next still applies, so batch 512, which no run has, is not run.
    from sam_lightning.reporting import findings

    for seed, erm in enumerate([0.44, 0.45, 0.43]):
        _job(tmp_path / "runs", seed, "erm", seed, extra={"data.batch_size": 128}, final_test_error=erm)
        _job(tmp_path / "runs", seed + 5, "sam", seed, extra={"data.batch_size": 128}, final_test_error=erm - 0.01)
    monkeypatch.setattr(findings, "RESULTS", tmp_path)

    def numbers(size):
        row = {"method": "sam", "model.width": 16, "data.batch_size": size}
        return findings.paired_row(findings.Finding("Fig. 17", "claim", "command", ("runs",), row))

    assert numbers(128)["mean"] == pytest.approx(-1.0)
    assert numbers(512) is None


def test_a_findings_row_over_a_shared_setting_says_where_erm_meets_its_criterion(tmp_path, monkeypatch):
    # Fig. 18's row: a width at which ERM does not fit its training data tests no claim of the paper,
    # so each width says on how many seeds ERM's runs met the regime's criterion (results.json
    # `criterion`); a width whose runs checked none says nothing of it. SAM's runs do not count.
    from sam_lightning.reporting import findings

    for seed, (erm, met) in enumerate([(0.44, True), (0.45, False), (0.43, True)]):
        check = {"metric": "train_eval/error", "rule": "<= 0.01", "value": 0.02 - 0.01 * met, "epoch": 110, "met": met}
        _job(tmp_path / "runs", seed, "erm", seed, extra={"model.width": 8}, final_test_error=erm, criterion=check)
        miss = {**check, "met": False}
        _job(tmp_path / "runs", seed + 5, "sam", seed, extra={"model.width": 8}, final_test_error=erm, criterion=miss)
        _job(tmp_path / "runs", seed + 10, "erm", seed, extra={"model.width": 32}, final_test_error=erm)
        _job(tmp_path / "runs", seed + 15, "sam", seed, extra={"model.width": 32}, final_test_error=erm - 0.01)
    monkeypatch.setattr(findings, "RESULTS", tmp_path)
    row = findings.Finding("Fig. 18", "claim", "command", ("runs",), {"method": "sam"}, note="n")
    text, _ = findings.over_values(row, "model.width", lambda w: f"at width {w:g}", fits=True)
    at_8, at_32 = text.split("; at width ")[1:]
    assert at_8.endswith("(ERM meets the criterion on 2 of 3 seeds)")
    assert "criterion" not in at_32
    assert "criterion" not in findings.over_values(row, "model.width", lambda w: f"at width {w:g}")[0]
