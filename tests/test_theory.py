"""The theory experiments: closed forms of App. A/B, step-code equality, the Fig. 6 ordering, the entry point.

.venv/bin/python -m pytest tests/test_theory.py -q        # ~1 min on 2 cores
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from sam_lightning.core.step import erm_gradients, sam_gradients
from sam_lightning.settings.config import ConfigError
from sam_lightning.theory import relu_1d
from sam_lightning.theory.diag_net import (
    DiagonalLinearNet,
    SparseRegression,
    make_sparse_regression,
    method_gradients,
    paper_draw,
    population_loss,
    quarter_squared_error,
    run_diag_net,
    run_steps,
)
from sam_lightning.theory.runner import run_job
from sam_lightning.theory.spec import DiagProblem, DiagTraining, display_name, rho_from_paper_code
from sam_lightning.variants import ERM, SAM

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "theory"
D = torch.float64


def sam(**settings) -> SAM:
    """The theory's SAM (conf/theory/method/sam.yaml): constant rho, no projection onto the ball."""
    return SAM(**{"normalize": False, "project": False, **settings})


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- closed forms (paper Eq. 5, Eq. 8, App. B) ----------------------------------------------------


def tiny_problem(seed: int = 0, d: int = 5, n: int = 4) -> tuple[DiagonalLinearNet, SparseRegression]:
    """Random w (not the symmetric init, so w_+ and w_- differ) and a random regression problem."""
    data = make_sparse_regression(DiagProblem(d=d, n=n, kappa=2), seed)
    net = DiagonalLinearNet(d, 0.5)
    gen = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        net.w_plus.copy_(0.5 + torch.rand(d, generator=gen, dtype=D))
        net.w_minus.copy_(0.5 + torch.rand(d, generator=gen, dtype=D))
    return net, data


def weights(net: DiagonalLinearNet) -> torch.Tensor:
    return torch.cat([net.w_plus.detach(), net.w_minus.detach()])


def example_gradient(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad of l_i(w) = (<w_+^2 - w_-^2, x_i> - y_i)^2 / 4 is r_i x~_i * w, x~_i = (x_i, -x_i) (App. B)."""
    x_tilde = torch.cat([x, -x])
    r = (x_tilde * w * w).sum() - y
    return r * x_tilde * w


def test_gradient_is_the_closed_form():
    net, data = tiny_problem()
    w = weights(net)
    erm_gradients(net, [net.w_plus, net.w_minus], quarter_squared_error, data.X, data.y)
    X_tilde = torch.cat([data.X, -data.X], dim=1)
    residual = X_tilde @ (w * w) - data.y
    expected = (X_tilde.T @ residual) * w / data.X.shape[0]  # (1/n) X~^T r * w
    torch.testing.assert_close(torch.cat([net.w_plus.grad, net.w_minus.grad]), expected, rtol=1e-12, atol=1e-14)
    per_example = torch.stack([example_gradient(w, x, y) for x, y in zip(data.X, data.y)]).mean(0)
    torch.testing.assert_close(per_example, expected, rtol=1e-12, atol=1e-14)


class RecordingNet(DiagonalLinearNet):
    """Keeps the weights of every forward pass: the ascent points of sam_gradients are the odd ones."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(weights(self).clone())
        return super().forward(x)


@pytest.mark.parametrize("m", [1, None], ids=["1-SAM", "n-SAM"])
def test_perturbations_and_gradient_follow_eq8(m):
    net, data = tiny_problem(seed=1)
    rec = RecordingNet(net.w_plus.shape[0], 0.5)
    rec.load_state_dict(net.state_dict())
    rho, n = 0.3, data.X.shape[0]
    w = weights(rec)
    # The chunk loop: the recording model keeps every weight it sees, which a vectorized pass cannot.
    sam_gradients(
        rec,
        [rec.w_plus, rec.w_minus],
        quarter_squared_error,
        data.X,
        data.y,
        SAM(rho=rho, m=m, normalize=False, project=False, engine="loop"),
        rho=rho,
    )
    grads = [example_gradient(w, x, y) for x, y in zip(data.X, data.y)]
    if m == 1:  # w^i_{t+1/2} = w + rho grad l_i(w)
        points = [w + rho * g for g in grads]
    else:  # w_{t+1/2} = w + (rho / n) sum_j grad l_j(w), the same for every i
        points = [w + rho * torch.stack(grads).mean(0)]
    torch.testing.assert_close(torch.stack(rec.seen[1::2]), torch.stack(points), rtol=1e-12, atol=1e-14)
    # the update direction: (1/n) sum_i grad l_i(w^i_{t+1/2})
    at = points if m == 1 else points * n
    expected = torch.stack([example_gradient(p, x, y) for p, x, y in zip(at, data.X, data.y)]).mean(0)
    torch.testing.assert_close(torch.cat([rec.w_plus.grad, rec.w_minus.grad]), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(weights(rec), w, rtol=0, atol=0)  # the step restores w exactly


def test_population_loss_is_the_gaussian_expectation():
    data = make_sparse_regression(DiagProblem(d=8, n=4, kappa=2), seed=3)
    beta = data.beta_star + 0.3 * torch.randn(8, generator=torch.Generator().manual_seed(0), dtype=D)
    x = torch.randn(200_000, 8, generator=torch.Generator().manual_seed(1), dtype=D)
    monte_carlo = float(quarter_squared_error(x @ beta, x @ data.beta_star))
    assert population_loss(beta, data.beta_star) == pytest.approx(monte_carlo, rel=0.02)
    assert int((data.beta_star != 0).sum()) == 2 and float(data.beta_star.norm()) == pytest.approx(1.0)


# -- the vectorized step code gives the iterates of the shared step code ---------------------------


@pytest.mark.parametrize(
    "method,batch_size,tol",
    [
        (ERM(), None, 1e-12),
        (sam(rho=0.2, m=None), None, 1e-12),
        (sam(rho=0.2, m=1), None, 1e-12),
        (sam(rho=0.2, m=2), None, 1e-12),
        (sam(rho=0.2, m=1), 4, 1e-12),
        (sam(rho=0.05, m=2, normalize=True), None, 1e-5),  # shared: norms in float32
        (sam(rho=0.2), 4, 1e-12),  # train.ascent=train: n-SAM's ascent on the whole training set
    ],
    ids=["erm", "n-sam", "1-sam", "2-sam", "1-sam-minibatch", "normalized", "n-sam-minibatch"],
)
def test_vectorized_step_code_matches_shared_step(method, batch_size, tol):
    data = make_sparse_regression(DiagProblem(d=6, n=8, kappa=2), seed=2)
    finals = []
    for step_code in ("shared", "vectorized"):
        net = DiagonalLinearNet(6, 0.3)
        training = DiagTraining(
            alpha=0.3, lr=0.1, iterations=25, batch_size=batch_size, log_every=5, step_code=step_code
        )
        traj = run_steps(net, data, method, training, 25, torch.Generator().manual_seed(0))
        finals.append((weights(net), traj.history))
    torch.testing.assert_close(finals[0][0], finals[1][0], rtol=tol, atol=tol)
    assert not torch.equal(finals[0][0], torch.full((12,), 0.3, dtype=D))  # it did move
    for a, b in zip(finals[0][1], finals[1][1]):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=max(tol, 1e-10))


def test_stochastic_nsam_ascends_on_the_whole_training_set():
    """Fig. 13's n-SAM on a mini-batch B: w - lr * (1/|B|) sum_{i in B} grad l_i(w + rho grad L(w)), L over
    all n examples (the max of Eq. 2 is over the sum of all losses), not over B alone (that is |B|-SAM)."""
    net, data = tiny_problem(seed=4, d=5, n=8)
    w, rho, batch = weights(net), 0.3, torch.tensor([1, 4, 6])
    full = torch.stack([example_gradient(w, x, y) for x, y in zip(data.X, data.y)]).mean(0)
    expected = torch.stack([example_gradient(w + rho * full, data.X[i], data.y[i]) for i in batch]).mean(0)
    method = sam(rho=rho)
    for step_code in ("shared", "vectorized"):
        net.zero_grad(set_to_none=True)
        method_gradients(net, method, data.X[batch], data.y[batch], step_code, ascent=(data.X, data.y))
        torch.testing.assert_close(torch.cat([net.w_plus.grad, net.w_minus.grad]), expected, rtol=1e-12, atol=1e-14)
    assert display_name(method, 5, "train") == "n-SAM" and display_name(method, 5, "batch") == "5-SAM"
    assert display_name(ERM(), 5) == "SGD" and display_name(sam(m=1), 5) == "1-SAM"
    with pytest.raises(ConfigError, match="unknown train.ascent 'other'"):
        DiagTraining(ascent="other")


# -- the paper's code: the same network in another parametrization ---------------------------------


def paper_code_step(u: np.ndarray, v: np.ndarray, X: np.ndarray, y: np.ndarray, gamma: float, rho: float, kind: str):
    """One step of the paper's code (diagonal_linear_nets/diag_nets.py), written out afresh: beta = u * v,
    loss ||X beta - y||^2 / (2n); n-SAM ascends by rho times the loss gradient, 1-SAM by 2 rho times
    example i's (u + 2 rho r_i x_i v), and GD is either with rho = 0."""

    def grads(u, v, X, y):  # per-row gradients of r_i^2 / 2: (r_i x_i v, r_i x_i u)
        r = X @ (u * v) if u.ndim == 1 else (X * u * v).sum(-1)
        r = r - y
        return r[:, None] * X * v, r[:, None] * X * u

    if kind == "1-SAM":  # every example its own ascent point
        gu, gv = grads(u, v, X, y)
        U, V = u + 2 * rho * gu, v + 2 * rho * gv
        du, dv = grads(U, V, X, y)
    else:
        gu, gv = grads(u, v, X, y)
        U, V = u + rho * gu.mean(0), v + rho * gv.mean(0)
        du, dv = grads(U, V, X, y)
    return u - gamma * du.mean(0), v - gamma * dv.mean(0)


@pytest.mark.slow
@pytest.mark.parametrize("kind,m", [("GD", None), ("n-SAM", None), ("1-SAM", 1)])
def test_iterates_equal_the_paper_codes_under_the_documented_map(kind, m):
    """1500 steps from the paper's init (w_+ = w_- = alpha is its code's u = 2 alpha, v = 0): the code's
    (u, v) equal (w_+ + w_-, w_+ - w_-) here to rounding, with the code's rho mapped by rho_from_paper_code."""
    data = make_sparse_regression(DiagProblem(), seed=0)
    X, y = data.X.numpy(), data.y.numpy()
    alpha, gamma, rho_code, steps = 0.05, 1 / 30, 0.0 if kind == "GD" else 5 / 30, 1500
    u, v = np.full(30, 2 * alpha), np.zeros(30)
    for _ in range(steps):
        u, v = paper_code_step(u, v, X, y, gamma, rho_code, kind)
    method = ERM() if kind == "GD" else sam(rho=rho_from_paper_code(rho_code, m), m=m)
    net = DiagonalLinearNet(30, alpha)
    training = DiagTraining(alpha=alpha, lr=gamma, iterations=steps, log_every=steps, step_code="vectorized")
    run_steps(net, data, method, training, steps, torch.Generator())
    w_plus, w_minus = net.w_plus.detach().numpy(), net.w_minus.detach().numpy()
    assert np.abs(u).max() > 0.5 and np.abs(v).max() > 0.1  # far from the init
    np.testing.assert_allclose(w_plus + w_minus, u, rtol=0, atol=1e-13)  # measured 3e-16 .. 1.3e-15
    np.testing.assert_allclose(w_plus - w_minus, v, rtol=0, atol=1e-13)


@pytest.mark.slow
def test_paper_draw_reproduces_the_notebooks_printed_test_losses():
    """data.source=paper is the notebook's draw; on it GD, 1-SAM and n-SAM give the test losses the
    notebook prints for Fig. 14 (its test loss: ||X_test beta - y_test||^2 / 2000 on its 1000 test
    points). Its n-SAM ran at step 10/d (it passes gamma_sgd, left at 10/d by an earlier cell), not 15/d."""
    rng = np.random.RandomState(0)
    X = rng.multivariate_normal(np.zeros(30), np.eye(30), 20)
    X_test = rng.multivariate_normal(np.zeros(30), np.eye(30), 1000)
    beta = rng.randn(30)
    beta[3:] = 0
    beta = np.abs(beta) / np.linalg.norm(beta)
    data = paper_draw(DiagProblem(source="paper"))
    np.testing.assert_array_equal(data.X.numpy(), X)
    np.testing.assert_array_equal(data.beta_star.numpy(), beta)

    def notebook_test_loss(method, lr):
        net = DiagonalLinearNet(30, 0.05)  # the notebook's u0 = 0.1
        run_steps(
            net,
            data,
            method,
            DiagTraining(alpha=0.05, lr=lr, iterations=10001, log_every=10001, step_code="vectorized"),
            10001,
            torch.Generator(),
        )
        b = (net.w_plus**2 - net.w_minus**2).detach().numpy()
        return np.linalg.norm(X_test @ (b - beta)) ** 2 / 2000

    assert notebook_test_loss(ERM(), 15 / 30) == pytest.approx(0.016445781003091926, rel=1e-9)
    assert notebook_test_loss(sam(rho=rho_from_paper_code(0.1, 1), m=1), 15 / 30) == pytest.approx(
        0.0015339774886805526, rel=1e-9
    )
    assert notebook_test_loss(sam(rho=rho_from_paper_code(0.1, None)), 10 / 30) == pytest.approx(
        0.016695513663723727, rel=1e-9
    )


# -- the Fig. 6 ordering, small and fast ----------------------------------------------------------


@pytest.mark.slow
def test_fig6_ordering_on_a_short_run():
    """1-SAM generalizes clearly better than GD; full-batch n-SAM stays close to GD (Theorem 1).

    Fig. 6's problem (d=30, n=20, kappa=3, alpha=0.1, the paper's rho 2.5/d: n-SAM 2.5/d, 1-SAM 5/d here,
    as experiment=diag_net) for the same gradient-flow time as
    3000 steps of 1/d, taken as 1500 steps of 2/d; on the vectorized step code, which the test above
    ties to the shared step code.
    """
    training = DiagTraining(alpha=0.1, lr=2 / 30, iterations=1500, log_every=1500, step_code="vectorized")
    ratio_1sam, ratio_nsam = [], []
    for seed in (0, 2, 3):
        out = {
            key: run_diag_net(DiagProblem(), training, method, seed=seed)
            for key, method in (
                ("gd", ERM()),
                ("n", sam(rho=2.5 / 30)),
                ("1", sam(rho=5 / 30, m=1)),
            )
        }
        assert max(o["final_train_loss"] for o in out.values()) < 5e-4, (seed, out)
        ratio_1sam.append(out["1"]["final_test_loss"] / out["gd"]["final_test_loss"])
        ratio_nsam.append(out["n"]["final_test_loss"] / out["gd"]["final_test_loss"])
    assert max(ratio_1sam) < 0.7 and sum(ratio_1sam) / 3 < 0.5, ratio_1sam  # measured 0.46, 0.21, 0.26
    assert all(0.95 < r < 1.2 for r in ratio_nsam), ratio_nsam  # measured 1.04, 1.02, 1.02


# -- GD -> 1-SAM switching and the line between solutions ------------------------------------------


def test_switch_branches_from_the_reference_and_measures_the_line():
    problem, method = DiagProblem(d=8, n=6, kappa=2), ERM()
    training = DiagTraining(alpha=0.2, lr=1 / 8, iterations=40, log_every=10, step_code="shared")
    out = run_diag_net(problem, training, method, seed=0, switch_at=20, switch_to=sam(rho=1.0, m=1), line_points=5)
    ref = out["reference"]
    assert out["history"][:3] == ref["history"][:3]  # iterations 0, 10, 20: same path before the switch
    assert out["history"][-1] != ref["history"][-1]
    assert out["line"][0]["train_loss"] == pytest.approx(ref["final_train_loss"], rel=1e-9)
    assert out["line"][-1]["test_loss"] == pytest.approx(out["final_test_loss"], rel=1e-9)
    plain = run_diag_net(problem, training, method, seed=0)
    assert plain["final_test_loss"] == pytest.approx(ref["final_test_loss"], rel=1e-12)


# -- the Hydra entry point --------------------------------------------------------------------------


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="theory", overrides=list(overrides))


def test_entry_point_via_compose_api(tmp_path):
    cfg = composed(
        "experiment=diag_net",
        "method=sam_m1",
        "train.iterations=30",
        "train.log_every=10",
        f"paths.output_dir={tmp_path}",
    )
    assert cfg.method.rho_paper == "2.5/d" and cfg.train.lr == "1/d" and cfg.method.m == 1  # as the paper states them
    payload = run_job(cfg)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "finished" and saved["method"] == "1-SAM" and saved["iterations"] == 30
    assert saved["final_train_loss"] == pytest.approx(payload["final_train_loss"]) and saved["final_test_loss"] > 0
    assert [r["step"] for r in saved["history"]] == [0, 10, 20, 30]
    assert saved["global_step"] == 30 and saved["history"][-1]["test/loss"] == pytest.approx(saved["final_test_loss"])
    assert saved["config"]["method"]["rho"] == pytest.approx(5 / 30)
    assert (
        saved["config"]["method"]["_target_"] == "sam_lightning.variants.SAM"
        and saved["config"]["method"]["name"] == "sam"
    )


def test_switch_to_is_built_as_method_is_and_label_names_the_run(tmp_path):
    common = ["experiment=diag_net_switch", "train.iterations=4", "switch.at=2", "train.log_every=2"]
    with pytest.raises(ConfigError, match=r"^switch.to: method.rho=-1: must be a number >= 0$"):
        run_job(composed(*common, "switch.to.rho=-1", f"paths.output_dir={tmp_path}"))
    plain = run_job(composed(*common, f"paths.output_dir={tmp_path / 'plain'}"))
    assert plain["method"] == "GD -> 1-SAM" and plain["config"]["switch"]["to"]["name"] == "sam"
    named = run_job(composed(*common, "label=GD_then_1-SAM", f"paths.output_dir={tmp_path / 'named'}"))
    assert named["method"] == "GD_then_1-SAM" and named["final_test_loss"] == plain["final_test_loss"]


def test_presets_state_the_papers_numbers_and_the_run_takes_this_projects():
    from sam_lightning.theory.units import in_project_units

    def units(method: dict, lr="1/d", d=30):
        return in_project_units({"data": {"d": d}, "train": {"lr": lr}, "method": method})

    one_sam = units({"name": "sam", "m": 1, "rho": None, "rho_paper": "2.5/d"})
    assert one_sam["train"]["lr"] == pytest.approx(1 / 30) and one_sam["method"] == {
        "name": "sam",
        "m": 1,
        "rho": pytest.approx(5 / 30),  # the paper's 1-SAM radius is half this project's
    }
    assert units({"m": None, "rho": None, "rho_paper": 0.175})["method"]["rho"] == pytest.approx(0.175)
    assert units({"m": 1, "rho": 0.2, "rho_paper": 0.175})["method"]["rho"] == 0.2  # given here: as it is
    assert units({"name": "erm", "m": None}, lr=0.05, d=10)["method"] == {"name": "erm", "m": None}
    assert units({"m": None, "rho": "3/d"}, lr="1.5e1/d", d=10)["train"]["lr"] == pytest.approx(1.5)
    for bad, key in (({"rho": "abc"}, "method.rho='abc'"), ({"rho_paper": "2.5/n"}, "method.rho_paper='2.5/n'")):
        with pytest.raises(ConfigError, match=key):
            units({"m": None, "rho": None, **bad})
    with pytest.raises(ConfigError, match="data.d=0"):
        units({"m": None, "rho": None}, d=0)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["method._target_=sam_lightning.variants.Adam"],
            "method._target_='sam_lightning.variants.Adam': no such class",
        ),
        (["method._target_=sam_lightning.variants.NSAM"], "the theory models take sam_lightning.variants.ERM or"),
        (["method=sam_m1", "train.batch_size=30"], "train.batch_size=30 exceeds the number of training examples n=20"),
        (
            ["method=sam", "method.project=true", "train.step_code=vectorized"],
            "train.step_code=vectorized computes SAM's",
        ),
        (["method=sam", "+method.rho_schedule=lr"], "method.rho_schedule='lr': the theory runs keep rho constant"),
        (["train.ascent=both"], "unknown train.ascent 'both'"),
    ],
)
def test_bad_settings_fail_with_one_line(tmp_path, overrides, message):
    cfg = composed("experiment=diag_net", "train.iterations=2", f"paths.output_dir={tmp_path}", *overrides)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        run_job(cfg)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "theory.py", *args], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


# -- the 1-D ReLU network ---------------------------------------------------------------------------


def test_slope_total_variation_is_exact():
    net = relu_1d.make_network(relu_1d.ReluSettings(width=30), seed=0)
    lo, hi = min(relu_1d.X_TRAIN), max(relu_1d.X_TRAIN)
    grid = torch.linspace(lo, hi, 400_001, dtype=D).unsqueeze(1)
    with torch.no_grad():
        f = net(grid)[:, 0]
    slopes = torch.diff(f) / torch.diff(grid[:, 0])
    changes = torch.diff(slopes).abs()
    numeric = float(changes[changes > 1e-7].sum())  # drop the rounding noise of the finite differences
    assert relu_1d.slope_total_variation(net) == pytest.approx(numeric, rel=1e-6)
    assert relu_1d.slope_total_variation(net) > 0


def test_relu_init_and_loss_are_the_paper_codes():
    """Seeds 0-4 give the networks of the paper's code (its Net after torch.manual_seed(seed), in
    float32), and the loss is its 0.5 * MSELoss(reduction='sum')."""
    settings = relu_1d.ReluSettings()
    for seed in range(5):
        torch.manual_seed(seed)  # the notebook's Net, written out: nn.Linear's own init, then its draws
        hidden = torch.nn.Linear(1, 100)
        w = 2.5 * (2 * torch.round(torch.rand_like(hidden.weight)) - 1)
        b = 2.5 * torch.randn_like(hidden.bias)
        out = torch.nn.Linear(100, 1, bias=False)
        a = 4.0 * torch.randn_like(out.weight)
        net = relu_1d.make_network(settings, seed)
        for mine, theirs in ((net.hidden.weight, w), (net.hidden.bias, b), (net.out.weight, a)):
            torch.testing.assert_close(mine, theirs.to(D), rtol=0, atol=0)
    x, y = relu_1d.training_data()
    with torch.no_grad():
        pred = net(x)
    expected = 0.5 * torch.nn.MSELoss(reduction="sum")(pred, y)
    assert float(relu_1d.half_sum_squared_error(pred, y)) == pytest.approx(float(expected), rel=1e-14)


def test_relu_vectorized_step_code_matches_shared_step():
    """All runs at once give the iterates of `sam_gradients` run after run: ERM at a constant step,
    normalized SAM with the linearly decaying one, and a run that stops early on its own."""
    settings = relu_1d.ReluSettings(width=20, inits=2, iterations=40, lr=2e-3, stop_below=0.0)
    methods = [ERM(), sam(rho=0.3, normalize=True)]
    pairs = [(m, s) for m in methods for s in (0, 1)]
    shared = [relu_1d.make_network(settings, s) for _, s in pairs]
    expected = [relu_1d.train_network(net, m, settings) for net, (m, _) in zip(shared, pairs)]
    fast = [relu_1d.make_network(settings, s) for _, s in pairs]
    results, _ = relu_1d.train_vectorized(fast, [m for m, _ in pairs], settings)
    for a, b, ra, rb in zip(shared, fast, expected, results):
        for pa, pb in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(pa, pb, rtol=1e-10, atol=1e-12)
        assert ra["iterations"] == rb["iterations"] == 40 and ra["time"] == pytest.approx(rb["time"], rel=1e-12)
    assert results[0]["time"] == pytest.approx(40 * 2e-3) and results[2]["time"] == pytest.approx(2e-3 * (40 - 41 / 2))
    assert not torch.equal(shared[0].out.weight, relu_1d.make_network(settings, 0).out.weight)  # it did move
    stopping = relu_1d.ReluSettings(width=20, inits=2, iterations=40, lr=2e-3, stop_below=10.0)
    first = [
        relu_1d.train_network(relu_1d.make_network(stopping, s), methods[0], stopping)["iterations"] for s in (0, 1)
    ]
    second, _ = relu_1d.train_vectorized([relu_1d.make_network(stopping, s) for s in (0, 1)], methods[:1] * 2, stopping)
    assert first == [r["iterations"] for r in second] and min(first) < 40


def test_relu_experiment_writes_png_and_numbers(tmp_path):
    settings = relu_1d.ReluSettings(width=20, inits=2, iterations=30, lr=1e-3)
    out = relu_1d.run_relu_1d(sam(rho=0.3, normalize=True), settings, seed=0, out_dir=tmp_path)
    assert Path(out["figure"]).stat().st_size > 5000
    assert set(out["methods"]) == {"ERM", "SAM"} and out["methods"]["SAM"]["inits"] == 2
    assert all(r["iterations"] == 30 for r in out["methods"]["ERM"]["runs"])
    with pytest.raises(ConfigError, match="relu_1d compares ERM with a SAM method"):
        relu_1d.run_relu_1d(ERM(), settings, seed=0, out_dir=tmp_path)


# -- tables: theory multiruns through the sweep aggregation ------------------------------------------


@pytest.mark.slow
def test_fig6_preset_is_a_multirun_ending_with_its_table(tmp_path):
    """The Fig. 6 preset, shortened: 3 methods x 2 seeds, the table printed at the end, the curves."""
    cfg = composed("experiment=fig6")
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        hcfg = compose(config_name="theory", overrides=["experiment=fig6"], return_hydra_config=True)
    assert hcfg.hydra.sweeper.params.method == "erm,sam,sam_m1" and hcfg.hydra.sweeper.params.seed == "0,1,2"
    assert "JoblibLauncher" in hcfg.hydra.launcher._target_ and hcfg.hydra.launcher.n_jobs == 2
    assert cfg.train.step_code == "vectorized" and cfg.method._target_ == "sam_lightning.variants.ERM"
    proc = run_cli(
        "experiment=fig6",
        "train.iterations=300",
        "train.log_every=50",
        "seed=0,1",
        "hydra/launcher=basic",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # one results.json and one printed line per job, each with its own settings
    files = sorted(tmp_path.glob("*/results.json"))
    configs = [json.loads(f.read_text())["config"] for f in files]
    assert sorted((c["method"]["name"], str(c["method"].get("m")), c["seed"]) for c in configs) == [
        ("erm", "None", 0),
        ("erm", "None", 1),
        ("sam", "1", 0),
        ("sam", "1", 1),
        ("sam", "None", 0),
        ("sam", "None", 1),
    ]
    printed = [line.split(":")[0] for line in proc.stdout.splitlines() if ": train loss " in line]
    assert sorted(printed) == ["1-SAM", "1-SAM", "GD", "GD", "n-SAM", "n-SAM"], proc.stdout[-2000:]
    table = proc.stdout[proc.stdout.index(f"sweep: {tmp_path}") :]
    rows = {
        line.split()[0]: line.split()
        for line in table.splitlines()
        if line.split()[:1] in (["erm"], ["sam"], ["sam_m1"])
    }
    assert set(rows) == {"erm", "sam", "sam_m1"} and all(r[1] == "2" for r in rows.values())  # 2 seeds each
    assert "test loss (range)" in table  # 2 seeds: their range, named so
    summary = {r["method"]: r for r in __import__("csv").DictReader(open(tmp_path / "summary" / "summary.csv"))}
    for method, row in summary.items():
        losses = [
            json.loads(p.read_text())["final_test_loss"] for p in tmp_path.glob(f"*method={method},*/results.json")
        ]
        assert len(losses) == 2 and float(row["mean"]) == pytest.approx(sum(losses) / 2)
        assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx((min(losses), max(losses)))
    assert (tmp_path / "summary" / "test_loss_curves.png").stat().st_size > 5000


def _theory_job(folder: Path, overrides: list[str], status: str, test: float | None, seed: int) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    payload = {
        "status": status,
        "reason": None if status == "finished" else "the training loss became non-finite",
        "final_test_loss": test,
        "final_train_loss": 1e-8,
        "config": {"seed": seed, "method": {"name": "sam", "rho": 0.1}},
        "history": [{"step": 10, "train/loss": 1e-3, "test/loss": test}],
    }
    (folder / "results.json").write_text(json.dumps(payload))


def test_rho_grid_table_by_method_and_rho_counts_diverged_runs(tmp_path, capsys):
    from sam_lightning.reporting.cli import main as sweep_main

    jobs = [
        ("sam_m1", 0.05, 0, 0.002),
        ("sam_m1", 0.05, 1, 0.004),
        ("sam_m1", 0.3, 0, 0.05),
        ("sam_m1", 0.3, 1, None),
        ("sam", 0.05, 0, 0.010),
        ("sam", 0.05, 1, 0.012),
        ("sam", 0.3, 0, 0.011),
        ("sam", 0.3, 1, 0.013),
    ]
    for i, (method, rho, seed, test) in enumerate(jobs):
        _theory_job(
            tmp_path / f"{i}_job",
            [f"method={method}", f"method.rho={rho}", f"seed={seed}", "experiment=diag_net_rho_grid"],
            "finished" if test is not None else "diverged",
            test,
            seed,
        )
    assert sweep_main([str(tmp_path), "--no-plots"]) == 0
    text = capsys.readouterr().out
    lines = {tuple(ln.split()[:2]): ln for ln in text.splitlines() if ln.split()[:1] in (["sam"], ["sam_m1"])}
    assert "0.003 [0.002, 0.004]" in lines[("sam_m1", "0.05")] and lines[("sam_m1", "0.05")].rstrip().endswith(" *")
    assert "1 diverged" in lines[("sam_m1", "0.3")] and " 1 " in lines[("sam_m1", "0.3")]  # one seed left
    assert "(*)" in lines[("sam", "0.05")]  # lowest, but its interval overlaps rho = 0.3's
    assert "test loss (range)" in text and "common overrides: experiment=diag_net_rho_grid" in text
