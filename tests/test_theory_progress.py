"""The theory runs' step loops report their progress: a log line at every tenth of the steps."""

from __future__ import annotations

import logging

import pytest
import torch

from sam_lightning.theory import progress as progress_module
from sam_lightning.theory import relu_1d
from sam_lightning.theory.diag_net import DiagonalLinearNet, make_sparse_regression, run_steps
from sam_lightning.theory.progress import progress
from sam_lightning.theory.spec import DiagProblem, DiagTraining
from sam_lightning.variants import SAM


def test_a_line_at_every_tenth_with_elapsed_time_and_eta(monkeypatch, caplog):
    now = [100.0]
    monkeypatch.setattr(progress_module.time, "time", lambda: now[0])
    caplog.set_level(logging.INFO, logger="sam_lightning.theory")
    seen = []
    for step in progress(range(1, 201), "1-SAM"):  # each step takes 3 s on the fake clock
        seen.append(step)
        now[0] += 3.0
    assert seen == list(range(1, 201))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0] == "1-SAM: step 20/200 (10%), elapsed 0:01:00, ETA 0:09:00"
    assert lines[-1] == "1-SAM: step 200/200 (100%), elapsed 0:10:00, ETA 0:00:00"


def test_a_loop_that_stops_early_reports_no_further_line(caplog):
    caplog.set_level(logging.INFO, logger="sam_lightning.theory")
    for step in progress(range(100), "GD"):
        if step == 35:
            break
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [f"GD: step {k}/100 ({k}%)" for k in (10, 20, 30)]


def _diag_net():
    data = make_sparse_regression(DiagProblem(d=6, n=8, kappa=2), seed=0)
    training = DiagTraining(alpha=0.3, lr=0.1, iterations=20, log_every=20, step_code="vectorized")
    method = SAM(rho=0.1, m=1, normalize=False, project=False)  # the theory's SAM (conf/theory/method/sam.yaml)
    run_steps(DiagonalLinearNet(6, 0.3), data, method, training, 20, torch.Generator())


def _relu(step_code: str):
    settings = relu_1d.ReluSettings(width=10, inits=1, iterations=20, lr=1e-3, step_code=step_code, plot=False)
    relu_1d.run_relu_1d(SAM(rho=0.1, normalize=True, project=False), settings, seed=0, out_dir=".")


@pytest.mark.parametrize(
    "run,label",
    [
        (_diag_net, "1-SAM"),
        (lambda: _relu("shared"), "relu_1d sam"),
        (lambda: _relu("vectorized"), "relu_1d, 2 runs at once"),
    ],
    ids=["diag_net", "relu_1d_shared", "relu_1d_vectorized"],
)
def test_every_theory_loop_reports(run, label, caplog):
    caplog.set_level(logging.INFO, logger="sam_lightning.theory")
    run()
    assert f"{label}: step 20/20 (100%)" in caplog.text
