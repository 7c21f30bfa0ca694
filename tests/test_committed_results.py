"""The results committed under docs/results/ (results.json files only): each regime's criterion holds
in them, and sweep.py makes the document's tables from them."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, compose_config

from sam_lightning.criterion import Criterion
from sam_lightning.results import current_keys
from sam_lightning.sweep.cli import main as sweep_main

RESULTS = ROOT / "docs" / "results"


def runs_of(preset: str, method: str) -> list[dict]:
    runs = [current_keys(json.loads(p.read_text())) for p in sorted((RESULTS / preset).rglob("results.json"))]
    return [r for r in runs if r["status"] == "finished" and r["config"]["method"].get("name") == method]


@pytest.mark.parametrize("preset", ["laptop_sam_vs_erm", "laptop_label_noise"])
def test_each_regimes_erm_runs_meet_the_criterion_its_preset_states(preset):
    # The rule is read from the preset (its `criterion` node), the runs from the committed files: runs
    # made before the check was written into results.json are checked the same way.
    crit = Criterion.from_mapping(compose_config([f"experiment={preset}"]).criterion)
    runs = runs_of(preset, "erm")
    if not runs:
        pytest.skip(f"no committed {preset} runs")
    for run in runs:
        reached = crit.check(run["history"], run["config"]["trainer"]["max_epochs"])
        assert reached["met"], (run["config"]["seed"], reached)
        if "criterion" in run:  # what the run recorded when it ended is what the rule gives now
            assert run["criterion"] == reached


@pytest.mark.parametrize("preset", sorted(p.name for p in RESULTS.iterdir()) if RESULTS.is_dir() else [])
def test_sweep_makes_the_documents_tables_from_the_committed_results(preset, tmp_path, capsys):
    code = sweep_main(
        [str(RESULTS / preset), "--paired", "seed", "--baseline", "erm", "--no-plots", "--out", str(tmp_path)]
    )
    assert code == 0
    assert "paired differences to erm" in capsys.readouterr().out


def test_curves_are_titled_by_what_they_plot_whatever_the_tables_metric(monkeypatch, tmp_path):
    # --metric best with a validation split ranks by the test error at the best validation epoch; the
    # curves still plot the logged test and train error (and, with label noise, the fit of each label kind).
    import sam_lightning.plots as plots

    if not (RESULTS / "laptop_label_noise").is_dir():
        pytest.skip("no committed laptop_label_noise runs")
    titles = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi=110: titles.setdefault(path.name, fig) and path)
    assert sweep_main([str(RESULTS / "laptop_label_noise"), "--metric", "best", "--out", str(tmp_path)]) == 0
    curves = titles["test_error_curves.png"]
    assert curves.get_suptitle().startswith("Test and train error (%) over epochs")
    assert {ax.get_ylabel() for ax in curves.axes} >= {"flipped labels fitted (%)", "train error, clean labels (%)"}
