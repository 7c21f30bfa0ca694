"""Sweeps end to end: a real tiny multirun through the command line, then sweep.py on its folder.

    .venv/bin/python -m pytest tests/test_sweep.py -q      # about a minute on 2 CPU cores

The multirun is the mixed grid the README advertises, `method=erm,sam_m32 method.rho=0.05,0.1`, of a
width-4 ResNet on 256 synthetic images, once per seed (two commands into one folder): ERM trains
at the first rho only (its job at the second rho is skipped: rho has no effect on ERM), 32-SAM at
both. Plus one job that fails (m=32 does not divide a batch of 48), run into the same folder by
submitit's local executor. The second command ends with the table (the end-of-multirun callback).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from sam_lightning.reporting.cli import main as sweep_main
from sam_lightning.reporting.collect import KEY
from sam_lightning.reporting.stats import bootstrap_ci, format_mean_ci
from sam_lightning.reporting.table import aggregate
from sam_lightning.reporting.wandb_io import run_from_api
from sam_lightning.run.naming import group_keys, method_label, sweep_name

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "experiment=smoke",
    "trainer.max_epochs=1",
    "data.n_train=256",
    "data.n_test=128",
    "trainer.limit_train_batches=2",
    "model.width=4",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def _train(args: list[str], failing_job: bool = False) -> subprocess.CompletedProcess:
    # One thread per process: on busy shared cores, torch's thread pool spins and a tiny job takes
    # ten times longer. A multirun with a job that did not finish exits 1 after its table.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", *TINY, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == (1 if failing_job else 0), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory) -> tuple[Path, str, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("multirun") / "sweep"
    # One process runs the jobs in turn: importing torch and Lightning costs more than a job.
    _train(["method=erm,sam_m32", "method.rho=0.05,0.1", "seed=0", f"hydra.sweep.dir={out}"])
    printed = _train(["method=erm,sam_m32", "method.rho=0.05,0.1", "seed=1", f"hydra.sweep.dir={out}"]).stdout
    # The failing job goes through submitit's local executor: its own process, as on a cluster.
    failing = _train(
        [
            "method=sam_m32",
            "data.batch_size=48",
            "seed=0",
            f"hydra.sweep.dir={out}",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=5",
        ],
        failing_job=True,
    )
    return out, printed, failing


@pytest.fixture(scope="module")
def sweep_dir(sweep_run) -> Path:
    return sweep_run[0]


@pytest.mark.slow
def test_a_multirun_with_a_failed_job_prints_the_table_and_exits_non_zero(sweep_run):
    failing = sweep_run[2]  # its one job failed (m = 32 does not divide 48); the folder's other jobs finished
    assert "test error" in failing.stdout and "summary.csv" in failing.stdout  # the table came first
    errors = [
        line
        for line in failing.stderr.splitlines()
        if line.startswith("error: 1 job(s) of this multirun did not finish")
    ]
    assert len(errors) == 1 and "(failed)" in errors[0], failing.stderr[-3000:]


def _results(sweep: Path) -> dict[str, dict]:
    out = {}
    for path in sweep.glob("*/results.json"):
        try:
            out[path.parent.name] = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
    return out


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_multirun_folders_are_named_by_overrides(sweep_dir):
    names = sorted(
        p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "summary"
    )
    assert len(names) == 9  # 4 + 4 in the grids and the failing job; each command restarts the numbering
    assert any(n.startswith("3_") and "method=sam_m32" in n and "method.rho=0.1" in n and "seed=1" in n for n in names)
    assert not any("logger=" in n for n in names)
    assert any((sweep_dir / ".submitit").glob("*/*_log.out"))  # submitit ran the failing job


@pytest.mark.slow
def test_erm_trains_once_in_a_rho_grid(sweep_dir):
    # Hydra numbers the jobs method x rho: job 1 is ERM at rho = 0.1, the same run as job 0 (rho = 0.05).
    for seed in (0, 1):
        jobs = {
            p.name.split("_", 1)[0]: p for p in sweep_dir.glob(f"[0-3]_*seed={seed}*") if "batch_size=48" not in p.name
        }
        skipped = json.loads((jobs["1"] / "results.json").read_text())
        assert "method=erm" in jobs["1"].name and "method.rho=0.1" in jobs["1"].name
        assert skipped["status"] == "skipped" and skipped["history"] == [] and skipped["final_test_error"] is None
        assert skipped["reason"] == "duplicate of job 0 (method=erm method.rho=0.05): method.rho has no effect on ERM"
        assert not (jobs["1"] / "checkpoints").exists() and not (jobs["1"] / "csv").exists()  # nothing trained
        assert [json.loads((jobs[n] / "results.json").read_text())["status"] for n in "023"] == ["finished"] * 3


@pytest.mark.slow
def test_sweep_py_groups_counts_means(sweep_dir, tmp_path):
    out = tmp_path / "summary"
    proc = subprocess.run(
        [sys.executable, "sweep.py", str(sweep_dir), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {(r["method"], r["method.rho"]): r for r in _csv(out / "summary.csv")}
    # ERM, in the grid but indifferent to rho: one group (rho empty), beside SAM's two rho points.
    assert set(rows) == {("erm", ""), ("sam_m32", "0.05"), ("sam_m32", "0.1")}
    assert [(rows[k]["n_seeds"], rows[k]["n_runs"]) for k in sorted(rows)] == [("2", "2"), ("2", "2"), ("2", "2")]
    assert {r["metric"] for r in rows.values()} == {"final_test_error"}

    # The means are the runs' own numbers, averaged per seed and then over seeds.
    by_group: dict = defaultdict(lambda: defaultdict(list))
    for payload in _results(sweep_dir).values():
        if payload["status"] != "finished":
            continue
        c = payload["config"]
        key = ("erm", "") if c["method"]["name"] == "erm" else ("sam_m32", f"{c['method']['rho']:g}")
        by_group[key][c["seed"]].append(payload["final_test_error"])
    for key, row in rows.items():
        per_seed = [np.mean(v) for _, v in sorted(by_group[key].items())]
        assert float(row["mean"]) == pytest.approx(np.mean(per_seed), abs=1e-12)
        low, high = float(row["ci_low"]), float(row["ci_high"])
        assert (low, high) == pytest.approx((min(per_seed), max(per_seed)))  # 2 seeds: the range
    sam = [rows[("sam_m32", "0.05")], rows[("sam_m32", "0.1")]]
    assert [r["best_rho"] for r in sam].count("1") == 1 and rows[("erm", "")]["best_rho"] == "0"
    assert min(sam, key=lambda r: float(r["mean"]))["best_rho"] == "1"

    # The failing job is named with its reason, excluded from every group; the skipped ones are counted.
    assert "excluded (1 job(s) failed or unfinished)" in proc.stdout
    assert "data.batch_size=48" in proc.stdout and "must divide" in proc.stdout
    assert "2 job(s) skipped" in proc.stdout and "best rho chosen on the test set" in proc.stdout
    failed = [r for r in _csv(out / "runs.csv") if r["status"] not in ("finished", "skipped")]
    assert len(failed) == 1 and failed[0]["status"] == "failed"
    assert sum(r["status"] == "skipped" for r in _csv(out / "runs.csv")) == 2
    assert all(r["excluded"] == "" for r in _csv(out / "summary.csv"))
    for png in ("test_error_vs_rho.png", "test_error_curves.png"):
        assert (out / png).stat().st_size > 5000
    header = next(ln for ln in (out / "summary.md").read_text().splitlines() if ln.startswith("| method"))
    assert [c.strip() for c in header.strip("|").split("|")][:4] == [
        "method",
        "method.rho",
        "seeds",
        "test error % (range)",  # 2 seeds: their range, named so
    ]


@pytest.mark.slow
def test_multirun_ends_with_the_sweep_table(sweep_run):
    sweep, printed, _ = sweep_run
    # as each job starts, where the multirun stands: k of N, the swept overrides, and an ETA from the second on
    progress = [ln for ln in printed.splitlines() if ln.startswith("job ")]
    assert [ln.split(" — ")[0] for ln in progress] == [
        "job 1/4 (method=erm method.rho=0.05)",
        "job 2/4 (method=erm method.rho=0.1)",
        "job 3/4 (method=sam_m32 method.rho=0.05)",
        "job 4/4 (method=sam_m32 method.rho=0.1)",
    ], printed[-3000:]
    assert "ETA" not in progress[0] and all(", ETA " in ln for ln in progress[1:])
    # The second command's callback read the whole folder: the first command's jobs (seed 0) too.
    table = printed[printed.index(f"sweep: {sweep}") :]
    lines = [ln.split() for ln in table.splitlines()]
    assert ["method", "method.rho", "seeds"] == lines[next(i for i, ln in enumerate(lines) if ln[:1] == ["method"])][:3]
    rows = [ln for ln in lines if ln[:1] in (["erm"], ["sam_m32"])]
    assert len(rows) == 3 and all(ln[2] == "2" for ln in rows)  # ERM once, 2 seeds per row
    assert (
        "2 job(s) skipped: each repeats another job of the sweep (ERM at a second rho); its results.json names which."
        in table
    )
    assert "skipped: duplicate of job 0 (method=erm method.rho=0.05): method.rho has no effect on ERM" in printed
    assert (sweep / "summary" / "summary.csv").is_file() and (sweep / "summary" / "test_error_curves.png").is_file()


@pytest.mark.slow
def test_unfinished_and_unreadable_jobs_are_listed_and_one_seed_has_no_interval(sweep_dir, tmp_path, capsys):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "csv", "summary"))
    jobs = {p.name: p for p in copy.iterdir() if p.is_dir()}
    killed = next(p for n, p in jobs.items() if "method=sam_m32" in n and "method.rho=0.1" in n and "seed=1" in n)
    payload = json.loads((killed / "results.json").read_text())
    (killed / "results.json").write_text(json.dumps({**payload, "status": "running", "reason": None}))
    broken = next(p for n, p in jobs.items() if "method=erm" in n and "method.rho=0.05" in n and "seed=0" in n)
    (broken / "results.json").write_text('{"status": "fini')

    assert sweep_main([str(copy), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "excluded (3 job(s) failed or unfinished)" in text
    assert f"{killed.name}: running" in text and f"{broken.name}: unreadable" in text
    rows = {(r["method"], r["method.rho"]): r for r in _csv(tmp_path / "out" / "summary.csv")}
    single = rows[("sam_m32", "0.1")]
    assert single["n_seeds"] == "1" and single["ci_low"] == single["ci_high"] == ""
    assert float(single["mean"]) == pytest.approx(
        _results(copy)[next(n for n in jobs if "method.rho=0.1" in n and "sam_m32" in n and "seed=0" in n)][
            "final_test_error"
        ]
    )
    assert rows[("erm", "")]["n_runs"] == "1"
    # Each group says which of its jobs are missing; the failed job of another batch size is in none.
    assert (single["excluded"], rows[("erm", "")]["excluded"], rows[("sam_m32", "0.05")]["excluded"]) == (
        "1 running",
        "1 unreadable",
        "",
    )
    line = next(ln for ln in text.splitlines() if ln.startswith("sam_m32") and " 0.1 " in ln)
    assert "[" not in line  # no interval from one seed


def _sweep_py(root: Path, out: Path, *args: str) -> str:
    """sweep.py's output with the folders named <dir> and <out>, so that two folders can be compared."""
    proc = subprocess.run(
        [sys.executable, "sweep.py", str(root), "--out", str(out), "--no-plots", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.replace(str(out), "<out>").replace(str(root), "<dir>")


@pytest.mark.slow
def test_the_results_json_files_alone_make_the_same_tables(sweep_dir, tmp_path):
    # Every job records its overrides in results.json, as .hydra/overrides.yaml holds them
    # (the skipped jobs and the failed one, run by submitit in its own process, too).
    jobs = sorted(p.parent for p in sweep_dir.glob("*/results.json"))
    assert len(jobs) == 9
    for job in jobs:
        assert json.loads((job / "results.json").read_text())["overrides"] == yaml.safe_load(
            (job / ".hydra" / "overrides.yaml").read_text()
        )
    bare = tmp_path / "bare"
    for job in jobs:
        (bare / job.name).mkdir(parents=True)
        shutil.copyfile(job / "results.json", bare / job.name / "results.json")
    # --export copies the same files, less the failed job (it ended in no result).
    proc = subprocess.run(
        [sys.executable, "sweep.py", str(sweep_dir), "--export", str(tmp_path / "exported")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    failed = next(j.name for j in jobs if "batch_size=48" in j.name)
    assert proc.stdout.splitlines()[0] == f"exported 8 job(s) to {tmp_path / 'exported'}: 8 new, 0 updated, 0 unchanged"
    assert f"  {failed}: failed" in proc.stdout
    assert sorted(
        p.relative_to(tmp_path / "exported") for p in (tmp_path / "exported").rglob("*") if p.is_file()
    ) == sorted(Path(j.name) / "results.json" for j in jobs if j.name != failed)

    paired = ("--paired", "seed", "--baseline", "erm")
    texts = {
        name: _sweep_py(root, tmp_path / name / "summary", *paired)
        for name, root in (("original", sweep_dir), ("bare", bare), ("exported", tmp_path / "exported"))
    }
    assert texts["original"] == texts["bare"]
    assert "paired differences to erm (same seed)" in texts["original"] and f"{failed}: failed" in texts["original"]
    start = texts["original"].index("\n\nexcluded (1 job(s)")
    assert (
        texts["exported"] == texts["original"][:start] + texts["original"][texts["original"].index("\n\n", start + 2) :]
    )
    for name in ("summary.csv", "paired.csv", "summary.md"):
        original = (tmp_path / "original" / "summary" / name).read_text().replace(str(sweep_dir), "<dir>")
        assert original == (tmp_path / "bare" / "summary" / name).read_text().replace(str(bare), "<dir>")
    for name in ("summary.csv", "paired.csv"):
        assert (tmp_path / "original" / "summary" / name).read_text() == (
            tmp_path / "exported" / "summary" / name
        ).read_text()
    assert (tmp_path / "original" / "summary" / "runs.csv").read_text() == (
        tmp_path / "bare" / "summary" / "runs.csv"
    ).read_text()
    rows = _csv(tmp_path / "original" / "summary" / "paired.csv")
    assert [(r["method"], r["method.rho"], r["n_pairs"]) for r in rows] == [
        ("sam_m32", "0.05", "2"),
        ("sam_m32", "0.1", "2"),
    ]


def _exact_bootstrap_quantiles(values, q=(0.025, 0.975)):
    """Every one of the n^n resamples, equally likely: the exact bootstrap distribution of the mean."""
    n = len(values)
    counts = Counter(
        round(float(np.mean([values[i] for i in idx])), 12) for idx in itertools.product(range(n), repeat=n)
    )
    atoms, cum, out = sorted(counts), 0, []
    for level in q:
        cum = 0
        for a in atoms:
            lo, cum = cum, cum + counts[a] / n**n
            if lo < level <= cum:
                out.append((a, min(level - lo, cum - level)))
                break
    return out


def test_bootstrap_ci_known_cases():
    values = [0.0, 1.0, 2.0, 10.0]
    (low, margin_low), (high, margin_high) = _exact_bootstrap_quantiles(values)
    assert min(margin_low, margin_high) > 3 * np.sqrt(0.025 * 0.975 / 10_000)  # far from an atom's edge
    assert bootstrap_ci(values) == pytest.approx((low, high))  # (0.5, 7.75)
    assert bootstrap_ci([0.2, 0.1]) == pytest.approx((0.1, 0.2))  # 2 seeds: the range
    assert bootstrap_ci([0.3]) is None and bootstrap_ci([]) is None
    assert bootstrap_ci([0.25, 0.25, 0.25]) == (0.25, 0.25)
    sample = np.random.default_rng(1).normal(5.0, 2.0, size=400)
    half = 1.96 * sample.std(ddof=1) / np.sqrt(len(sample))
    ci = bootstrap_ci(sample)
    assert ci[0] < sample.mean() < ci[1]
    assert (ci[1] - ci[0]) / 2 == pytest.approx(half, rel=0.1)


def test_group_keys():
    a = group_keys(
        ["method=sam_m32", "method.rho=0.10", "seed=3", "logger=wandb", "trainer.devices=1", "+sweep=rho_grid"]
    )
    assert a == group_keys(["+sweep=rho_grid", "seed=0", "method.rho=0.1", "method=sam_m32"])
    assert a == {"method": "sam_m32", "method.rho": 0.1}
    assert group_keys(["+trainer.limit_train_batches=2"]) == {"trainer.limit_train_batches": 2}
    # A key the run's own config does not hold (a method without rho) does not split groups;
    # config group choices always count.
    erm = {"method": {"name": "erm"}, "seed": 1}
    assert group_keys(["method=erm", "method.rho=0.4", "experiment=smoke", "seed=1"], erm) == {
        "experiment": "smoke",
        "method": "erm",
    }


def test_aggregate_groups_by_what_varies_and_stars_only_a_separated_best():
    def runs(rows):
        return pd.DataFrame(
            [
                {
                    "job": f"j{i}",
                    "status": "finished",
                    "seed": seed,
                    "final_test_error": err,
                    "final_train_error": 0.0,
                    KEY + "method": method,
                    **({KEY + "method.rho": rho} if rho is not None else {}),
                    KEY + "data": "synthetic",
                }
                for i, (method, rho, seed, err) in enumerate(rows)
            ]
        )

    rows = [("erm", None, 0, 0.30), ("erm", None, 1, 0.32)]
    rows += [
        ("sam", rho, seed, base + 0.01 * seed)
        for rho, base in ((0.05, 0.20), (0.1, 0.10), (0.2, 0.25))
        for seed in (0, 1, 2)
    ]
    summary, info = aggregate(runs(rows))
    assert info["groups"] == [KEY + "method", KEY + "method.rho"] and info["common"] == {"data": "synthetic"}
    assert summary[KEY + "method"].tolist() == ["erm", "sam", "sam", "sam"]
    assert summary["n_seeds"].tolist() == [2, 3, 3, 3]
    best = summary[summary["best"]]
    assert best[KEY + "method.rho"].tolist() == [0.1] and best["separated"].tolist() == [True]
    # Overlapping intervals: still the lowest mean, but no star.
    rows[-3:] = [("sam", 0.2, seed, err) for seed, err in ((0, 0.05), (1, 0.15), (2, 0.12))]
    summary, _ = aggregate(runs(rows))
    assert summary.loc[summary["best"], KEY + "method.rho"].tolist() == [0.2] and not summary["separated"].any()
    # A tie (one seed each, as in a rho grid on seed 0) goes to the smallest rho, whatever the job order.
    tie = [("sam", rho, 0, err) for rho, err in ((0.2, 0.10), (0.05, 0.30), (0.1, 0.10))]
    summary, _ = aggregate(runs(tie))
    assert summary.loc[summary["best"], KEY + "method.rho"].tolist() == [0.1]
    # Without a varying key there is one row; a failed job is counted, not averaged.
    one = pd.concat(
        [runs(rows[:2]), pd.DataFrame([{"job": "x", "status": "diverged", "reason": "nan", KEY + "method": "erm"}])]
    )
    summary, info = aggregate(one)
    assert (
        len(summary) == 1
        and summary["mean"].iloc[0] == pytest.approx(0.31)
        and summary["excluded"].iloc[0] == "1 diverged"
    )
    assert (
        format_mean_ci(0.31, 0.30, 0.32, scale=100, spec=".2f") == "31.00 [30.00, 32.00]"
        and format_mean_ci(0.5) == "0.5"
    )


def test_names():
    assert sweep_name("multirun/rho_grid/2026-11-28/10-00-00") == "rho_grid/2026-11-28/10-00-00"
    assert sweep_name("/scratch/me/multirun/2026-11-28/10-00-00") == "2026-11-28/10-00-00"
    assert sweep_name("/tmp/elsewhere") == "elsewhere"
    assert [
        method_label(m)
        for m in (
            {"name": "erm", "m": 4},
            {"name": "sam", "m": None},
            {"name": "sam", "m": 128},
            {"name": "sam", "m": None, "normalize": False},
        )
    ] == ["erm", "sam", "sam_m128", "sam_const"]


def test_wandb_runs_become_runs_and_problems():
    def fake(name, state="finished", done=2, err=0.3, job_type="sam"):
        config = {
            "method": {"name": "sam", "rho": 0.1, "m": None},
            "seed": int(name[-1]),
            "trainer": {"max_epochs": 2},
            "data": {"name": "synthetic", "batch_size": 128},
            "model": {"arch": "preact_resnet18"},
            "hydra": {"overrides": ["method=sam", "method.rho=0.1", f"seed={name[-1]}"]},
        }
        summary = {"final_test_error": err, "final_train_error": 0.1, "epochs_done": done}
        history = [{"epoch": 0, "test/error": 0.5}, {"epoch": 1, "test/error": err}]
        return SimpleNamespace(
            name=name, state=state, config=config, summary=summary, job_type=job_type, scan_history=lambda keys: history
        )

    row, history = run_from_api(fake("s0"))
    assert (row[KEY + "method"], row[KEY + "method.rho"], row["seed"], row["final_test_error"]) == ("sam", 0.1, 0, 0.3)
    assert row["status"] == "finished" and len(history) == 2
    assert run_from_api(fake("s1", state="crashed"))[0]["status"] == "crashed"
    assert run_from_api(fake("s2", done=1))[0]["reason"] == "1 of 2 epochs done"
    assert run_from_api(fake("s3", job_type="sweep-summary")) is None
    # The rows aggregate like job folders: one group of two seeds.
    summary, _ = aggregate(pd.DataFrame([run_from_api(fake("s0"))[0], run_from_api(fake("s1", err=0.5))[0]]))
    assert summary["n_seeds"].tolist() == [2] and summary["mean"].iloc[0] == pytest.approx(0.4)


def test_wandb_source_fails_fast_offline(tmp_path, monkeypatch, capsys):
    """Without an API key it refuses before any network call (which would hang or prompt)."""
    import wandb

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))

    def no_network(*args, **kwargs):
        raise AssertionError("W&B's API was contacted")

    monkeypatch.setattr(wandb, "Api", no_network)
    assert sweep_main(["--wandb", "me/sam-lightning", "--group", "rho_grid/x"]) == 2
    assert "W&B is not available" in capsys.readouterr().err


def test_bad_input_is_one_line(tmp_path, capsys):
    assert sweep_main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: no such folder"
    (tmp_path / "empty").mkdir()
    assert sweep_main([str(tmp_path / "empty")]) == 2


def test_sweep_presets_compose():
    from hydra import compose, initialize_config_dir
    from hydra.types import RunMode

    with initialize_config_dir(config_dir=str(ROOT / "conf" / "train"), version_base="1.3"):
        cfg = compose("train", overrides=["+sweep=rho_grid"], return_hydra_config=True)
        assert cfg.hydra.sweeper.params["method.rho"] == "0.025,0.05,0.1,0.2,0.3,0.4"
        assert cfg.hydra.sweeper.params.seed == "0,1,2" and cfg.hydra.mode == RunMode.MULTIRUN
        slurm = compose(
            "train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True
        )
        assert slurm.hydra.launcher.partition == "gpu" and slurm.hydra.launcher.gpus_per_node == 1
        assert "SlurmLauncher" in slurm.hydra.launcher._target_
        local = compose("train", overrides=["hydra/launcher=parallel"], return_hydra_config=True)
        assert local.hydra.launcher.n_jobs == 2


def test_wandb_names_follow_the_sweep():
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from sam_lightning.run.naming import wandb_names

    with initialize_config_dir(config_dir=str(ROOT / "conf" / "train"), version_base="1.3"):
        cfg = compose(
            "train", overrides=["method=sam", "method.rho=0.2", "seed=1", "logger=wandb"], return_hydra_config=True
        )
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = "multirun/rho_grid/2026-11-28/10-00-00"
        cfg.hydra.job.num = 3
        cfg.hydra.overrides.task = ["method=sam", "method.rho=0.2", "seed=1", "logger=wandb"]
        cfg.hydra.job.override_dirname = "method.rho=0.2,method=sam,seed=1"
    HydraConfig.instance().set_config(cfg)
    try:
        names = wandb_names(cfg)
    finally:
        HydraConfig.instance().cfg = None
    assert (names["group"], names["job_type"], names["name"]) == (
        "rho_grid/2026-11-28/10-00-00",
        "sam",
        "sam rho=0.2 s1",  # no multirun.yaml to read the grid from: every key of the job's overrides counts
    )
    assert names["hydra"]["group_key"] == "method=sam,method.rho=0.2" and names["hydra"]["job_num"] == 3


@pytest.mark.slow
def test_optuna_preset_runs_trials_and_a_failed_trial_does_not_stop_the_study(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def search(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "train.py", "hparams_search=rho_optuna", *TINY, "hydra.sweeper.n_trials=2", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        failing = "data.batch_size=48" in args  # a study whose trials failed ends with its table, then exits 1
        assert proc.returncode == (1 if failing else 0), proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    # Every trial fails at once (m = 32 does not divide a batch of 48): each returns inf, the study ends normally.
    failed = search("method=sam_m32", "data.batch_size=48", f"hydra.sweep.dir={tmp_path / 'failing'}")
    assert "Best value: inf" in failed
    assert [json.loads(p.read_text())["status"] for p in (tmp_path / "failing").glob("*/results.json")] == [
        "failed",
        "failed",
    ]
    # Two real trials: different (rho, lr), the best value is one of their validation errors (test
    # errors for a run without a split), and the table ends the run.
    out = search(f"hydra.sweep.dir={tmp_path / 'ok'}")
    payloads = [json.loads(p.read_text()) for p in (tmp_path / "ok").glob("*/results.json")]
    assert (
        len(payloads) == 2 and len({(p["config"]["method"]["rho"], p["config"]["optim"]["lr"]) for p in payloads}) == 2
    )
    assert {p["config"]["data"]["val_fraction"] for p in payloads} == {0.1}
    best = float(out.split("Best value: ")[1].split()[0])
    objective = [
        p["final_val_error"] if p.get("final_val_error") is not None else p["final_test_error"] for p in payloads
    ]
    assert best == pytest.approx(min(objective))
    assert "method.rho" in out[out.index("Best value") :] and "optim.lr" in out[out.index("Best value") :]


def _figure_of(monkeypatch, draw):
    """The matplotlib figure a sweep plot saves (drawn on an Agg canvas to measure its labels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    import sam_lightning.reporting.plots as plots

    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi=110: saved.append(fig) or path)
    assert draw() is not None
    (fig,) = saved
    FigureCanvasAgg(fig).draw()
    return fig


def _optuna_trials(n: int = 14) -> pd.DataFrame:
    """An Optuna study's jobs: trial_<k> folders, each with its own sampled (rho, lr), one seed."""
    import numpy as np

    rng = np.random.default_rng(0)
    rhos = np.exp(rng.uniform(np.log(0.01), np.log(0.5), n))
    rhos[1], rhos[2] = 0.051, 0.053  # close rho values: their tick labels would overlap
    lrs = np.exp(rng.uniform(np.log(0.01), np.log(0.4), n))
    return pd.DataFrame(
        [
            {
                "job": f"trial_{k}",
                "status": "finished",
                "seed": 0,
                "final_test_error": 0.2 + 0.01 * k,
                "final_train_error": 0.0,
                KEY + "method.rho": float(rho),
                KEY + "optim.lr": float(lr),
            }
            for k, (rho, lr) in enumerate(zip(rhos, lrs))
        ]
    )


def test_optuna_trials_have_a_trial_column_and_a_readable_plot_against_rho(tmp_path, monkeypatch):
    from sam_lightning.reporting.plots import sweep_vs_rho
    from sam_lightning.reporting.table import display_frame

    summary, info = aggregate(_optuna_trials())
    table = display_frame(summary, info)
    assert table.columns[0] == "trial" and sorted(table["trial"].astype(int)) == list(range(14))
    fig = _figure_of(monkeypatch, lambda: sweep_vs_rho(summary, info, tmp_path / "vs_rho.png"))
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert legend is None or len(legend.get_texts()) <= 2  # not one entry per sampled lr
    renderer = fig.canvas.get_renderer()
    lo, hi = ax.get_xlim()
    labels = [t for t in ax.get_xticklabels() if t.get_text() and lo <= t.get_position()[0] <= hi]
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:])), [t.get_text() for t in labels]


def test_by_row_plot_draws_the_seed_dots_above_the_whiskers(tmp_path, monkeypatch):
    from sam_lightning.reporting.plots import sweep_points

    runs = pd.DataFrame(
        [
            {
                "job": f"j{i}",
                "status": "finished",
                "seed": seed,
                "final_test_error": 0.2 + 0.05 * seed + 0.1 * (m == "b"),
                "final_train_error": 0.0,
                KEY + "method": m,
            }
            for i, (m, seed) in enumerate([("a", 0), ("a", 1), ("b", 0), ("b", 1)])
        ]
    )
    summary, info = aggregate(runs)
    fig = _figure_of(monkeypatch, lambda: sweep_points(summary, info, runs, tmp_path / "by_row.png"))
    ax = fig.axes[0]
    dots = [line for line in ax.lines if line.get_marker() == "." and len(line.get_xdata()) == 2]
    whiskers = [c for c in ax.collections]  # the errorbars' interval lines
    assert dots and whiskers and min(d.get_zorder() for d in dots) > max(w.get_zorder() for w in whiskers)


def test_curves_have_one_panel_per_method_and_a_line_per_setting(tmp_path, monkeypatch):
    # A sigma grid of random perturbations is one panel with a line per sigma, not a panel per sigma.
    from sam_lightning.reporting import plots
    from sam_lightning.reporting.plots import sweep_curves

    rows = [
        ("erm", {}),
        ("random", {"method.rho": 0.05, "method.sigma": 0.01}),
        ("random", {"method.rho": 0.05, "method.sigma": 0.02}),
        ("erm_to_sam", {"method.rho": 0.05, "method.switch_at": 0.5}),
    ]
    runs = pd.DataFrame(
        [
            {"job": f"j{i}", "status": "finished", "seed": 0, "final_test_error": 0.5, "final_train_error": 0.0}
            | {KEY + "method": method}
            | {KEY + k: v for k, v in keys.items()}
            for i, (method, keys) in enumerate(rows)
        ]
    )
    histories = {f"j{i}": [{"epoch": e, "test/error": 0.6, "train/error": 0.1} for e in range(3)] for i in range(4)}
    summary, info = aggregate(runs)
    fig = _figure_of(monkeypatch, lambda: sweep_curves(summary, info, runs, histories, tmp_path / "c.png"))
    grid = [fig.axes[i : i + 2] for i in range(0, len(fig.axes), 2)]  # a row per method: test, train
    # ERM is no panel of its own: the dashed grey reference in every panel
    assert [row[0].get_title(loc="left") for row in grid] == ["erm_to_sam", "random"]
    for ax in fig.axes:
        (ref,) = [line for line in ax.lines if line.get_label().startswith("erm (reference)")]
        assert ref.get_linestyle() == "--" and ref.get_color() == plots.REFERENCE_COLOR
    # a method keeps its colours in every panel; its settings differ by shade and line style
    looks = [[(line.get_color(), line.get_linestyle()) for line in ax.lines[1:]] for ax in fig.axes]
    assert looks[0] == looks[1] and looks[2] == looks[3] and len(set(looks[2])) == 2
    assert not {c for c, _ in looks[0]} & {c for c, _ in looks[2]}
    # one legend per row, to the right of its panels, never over the data
    renderer = fig.canvas.get_renderer()
    for row in grid:
        legend = row[1].get_legend()
        assert legend.get_window_extent(renderer).x0 >= row[1].get_window_extent(renderer).x1
        assert [t.get_text() for t in legend.get_texts()][0] == "erm (reference) (1 seed)"
    assert [t.get_text() for t in grid[1][1].get_legend().get_texts()][1:] == [
        "sigma=0.01 (1 seed)",
        "sigma=0.02 (1 seed)",
    ]
    assert "95% CI" not in fig.get_suptitle()  # one seed: no band, none named


def test_switch_plot_puts_the_switch_point_on_x_a_line_per_direction_and_erm_across(tmp_path, monkeypatch):
    # Paper Fig. 8: each switching method a line over its switch points; ERM, never switched, a dashed
    # line across; with more unswitched rows than MAX_ACROSS (a regime's grid) only ERM is drawn.
    from sam_lightning.reporting import plots
    from sam_lightning.reporting.plots import sweep_vs_switch

    rows = [("erm", {}, 0.45)]
    rows += [("erm_to_sam", {"method.switch_at": p}, 0.40 + 0.05 * p) for p in (0.25, 0.5, 0.75)]
    rows += [("sam_to_erm", {"method.switch_at": p}, 0.42 - 0.02 * p) for p in (0.25, 0.75)]
    rows += [("sam", {"method.rho": r}, 0.41) for r in (0.01, 0.02, 0.05, 0.1)]
    runs = pd.DataFrame(
        [
            {"job": f"j{i}_{seed}", "status": "finished", "seed": seed, "final_train_error": 0.0}
            | {"final_test_error": error + 0.01 * seed, KEY + "method": method}
            | {KEY + k: v for k, v in keys.items()}
            for i, (method, keys, error) in enumerate(rows)
            for seed in (0, 1)
        ]
    )
    summary, info = aggregate(runs)
    fig = _figure_of(monkeypatch, lambda: sweep_vs_switch(summary, info, tmp_path / "vs_switch.png"))
    ax = fig.axes[0]
    lines = {t.get_text().split(" (")[0]: t for t in ax.get_legend().get_texts()}
    assert set(lines) == {"erm", "erm_to_sam", "sam_to_erm"}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["25", "50", "75"]
    drawn = {tuple(np.round(line.get_xdata(), 6)) for line in ax.lines if len(line.get_xdata()) > 1}
    assert (25.0, 50.0, 75.0) in drawn and (25.0, 75.0) in drawn
    erm = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(erm) == 1 and erm[0].get_ydata()[0] == pytest.approx(45.5)
    monkeypatch.setattr(plots, "MAX_ACROSS", 4)  # few enough unswitched rows: each drawn across
    fig = _figure_of(monkeypatch, lambda: sweep_vs_switch(summary, info, tmp_path / "vs_switch.png"))
    assert len([line for line in fig.axes[0].lines if line.get_linestyle() == "--"]) == 5
    # The title stays inside the figure although the legend's long labels narrow the axes.
    long = runs.copy()
    long.loc[long[KEY + "method"].str.contains("_to_"), [KEY + "method.m", KEY + "method.rho"]] = [4, 0.0125]
    fig = _figure_of(monkeypatch, lambda: sweep_vs_switch(*aggregate(long), tmp_path / "vs_switch.png"))
    fig.canvas.draw()
    title = fig._suptitle if fig.get_suptitle() else fig.axes[0].title
    extent = title.get_window_extent()
    assert title.get_text().startswith("Test error (%) against the switch point")
    assert extent.x0 >= 0 and extent.x1 <= fig.bbox.width
    without = runs[runs[KEY + "method"].isin(["erm", "sam"])]
    assert sweep_vs_switch(*aggregate(without), tmp_path / "none.png") is None
