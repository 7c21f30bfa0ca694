"""Every experiment preset runs its CPU smoke variant (`experiment=<name> debug=smoke`) end to end."""

from __future__ import annotations

import pytest
from conftest import CONF, compose_config

from train import train

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if p.stem.startswith("fig"))


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_smoke_variant_runs(preset, tmp_path):
    cfg = compose_config(
        [
            f"experiment={preset}",
            "debug=smoke",
            f"paths.output_dir={tmp_path}",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
        ]
    )
    assert cfg.data.name == "synthetic" and cfg.trainer.accelerator == "cpu"
    out = train(cfg)
    assert out["status"] == "finished" and out["epochs_done"] == cfg.trainer.max_epochs


def test_presets_keep_their_paper_settings():
    fig4 = compose_config(["experiment=fig4"])
    assert (fig4.model.norm, fig4.data.batch_size, fig4.method.m) == ("group", 256, 256)
    assert compose_config(["experiment=fig11"]).trainer.max_epochs == 1000
    assert compose_config(["experiment=fig12"]).data.label_noise == 0.6
    fig9 = compose_config(["experiment=fig9"])
    assert (fig9.method.order, fig9.method.switch_at, fig9.method.rho) == ("erm_to_sam", 0.9, 0.4)
    assert compose_config(["experiment=fig16"]).model.norm == "group"
