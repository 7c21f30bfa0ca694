"""A regime's criterion (sam_lightning/settings/criterion.py): the best value of a logged metric inside a
window of epochs, against one bound; checked at the end of the runs it applies to."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import compose_config

from sam_lightning.settings.config import ConfigError
from sam_lightning.settings.criterion import Criterion
from train import train

FITS = {"metric": "train_eval/error", "at_most": 0.01, "by_fraction": 0.75}


def _history(values: dict[int, float], key: str = "train_eval/error") -> list[dict]:
    """Epochs counted from 0, as results.json's history holds them; one entry without the key."""
    return [{"epoch": e, key: v} for e, v in values.items()] + [{"epoch": 0, "train/error": 0.5}]


def test_the_best_value_inside_the_window_counts():
    crit = Criterion(**FITS)
    # 150 epochs: the window is epochs 1..112 (history epochs 0..111); the value at 112 (epoch 113) is outside
    reached = crit.check(_history({99: 0.02, 109: 0.0, 111: 0.005, 112: 0.5}), max_epochs=150)
    assert reached == {
        "metric": "train_eval/error",
        "rule": "train_eval/error <= 0.01 by epoch 112 of 150",
        "value": 0.0,
        "epoch": 110,
        "met": True,
    }
    assert not crit.check(_history({99: 0.02, 112: 0.0}), max_epochs=150)["met"]  # only after the window
    assert not crit.check(_history({111: 0.0101}), max_epochs=150)["met"]  # the bound is the bound


def test_at_least_takes_the_highest_value_and_an_unlogged_metric_is_not_met():
    crit = Criterion(metric="train/noisy_fit", at_least=0.5)
    reached = crit.check(_history({4: 0.1, 54: 0.57, 98: 0.9, 99: 0.88}, "train/noisy_fit"), max_epochs=100)
    assert (reached["value"], reached["epoch"], reached["met"]) == (0.9, 99, True)
    assert not crit.check(_history({99: 0.49}, "train/noisy_fit"), max_epochs=100)["met"]
    never = crit.check(_history({10: 0.0}), max_epochs=100)
    assert never["value"] is None and never["epoch"] is None and not never["met"]
    assert "never logged" in crit.describe(never) and "NOT met" in crit.describe(never)


def test_the_criterion_applies_to_the_methods_it_names():
    crit = Criterion(**FITS)
    assert crit.applies_to("erm") and not crit.applies_to("sam")
    assert Criterion(**FITS, methods=["erm", "sam"]).applies_to("sam")


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"metric": "train_eval/error"}, "exactly one of at_most and at_least"),
        ({**FITS, "at_least": 0.5}, "exactly one of at_most and at_least"),
        ({**FITS, "by_fraction": 0}, "criterion.by_fraction=0"),
        ({**FITS, "by_fraction": 1.5}, "criterion.by_fraction=1.5"),
        ({**FITS, "methods": "erm"}, "criterion.methods='erm'"),
        ({**FITS, "at_mots": 0.1}, "did you mean at_most?"),
        ({**FITS, "at_most": "low"}, "criterion.at_most='low'"),
        ({**FITS, "metric": ""}, "criterion.metric"),
    ],
)
def test_bad_criteria_are_one_line_each(node, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        Criterion.from_mapping(node)


def test_the_regime_presets_state_their_criterion():
    for preset, metric in (
        ("laptop_sam_vs_erm", "train_eval/error"),
        ("laptop_small_m", "train_eval/error"),
        ("laptop_label_noise", "train/noisy_fit"),
    ):
        crit = Criterion.from_mapping(compose_config([f"experiment={preset}"]).criterion)
        assert crit.metric == metric and crit.methods == ("erm",)
    assert compose_config([]).criterion is None


@pytest.mark.parametrize(("bound", "met"), [(0.99, True), (0.0, False)])
def test_a_run_checks_its_criterion_at_the_end(tiny_cfg, caplog, bound, met):
    cfg = tiny_cfg("method=erm", f"criterion={{metric:train/error,at_most:{bound}}}")
    with caplog.at_level(logging.INFO, logger="train"):
        out = train(cfg)
    reached = json.loads(Path(cfg.paths.output_dir, "results.json").read_text())["criterion"]
    assert reached == out["criterion"] and reached["met"] is met and reached["epoch"] == 1
    line = [r for r in caplog.records if r.getMessage().startswith("criterion")]
    assert len(line) == 1 and line[0].levelno == (logging.INFO if met else logging.WARNING)


def test_runs_of_other_methods_record_no_criterion(tiny_cfg):
    out = train(tiny_cfg("method=sam", "criterion={metric:train/error,at_most:0.5}"))
    assert "criterion" not in out
