"""The analysis tools: m-sharpness against closed forms and against SAM's own step, safe checkpoint
loading, interpolation end points, and both commands end to end on two tiny train.py checkpoints."""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, TINY, compose_config
from torch import nn

from sam_lightning.analysis.evaluation import Points, recompute_bn_stats, select_points
from sam_lightning.analysis.interpolation import interpolate_state, interpolation_curve
from sam_lightning.analysis.interpolation import run as interpolation_run
from sam_lightning.analysis.sharpness import ascend, batchnorm_mode, m_sharpness
from sam_lightning.core.step import global_norm, sam_gradients
from sam_lightning.data.augment import normalize
from sam_lightning.data.sources import make_synthetic
from sam_lightning.models import build_model
from sam_lightning.run.checkpoints import load_checkpoint, require_same_architecture
from sam_lightning.settings.config import ConfigError
from sam_lightning.variants import SAM


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models on a shared machine: a second thread only adds synchronization (about 5x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- closed forms -------------------------------------------------------------------------------
class LinearScore(nn.Module):
    """f_x(w) = <w, x> on the flattened input."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w


def signs(y: torch.Tensor) -> torch.Tensor:
    return y.to(torch.float64) * 2 - 1  # labels {0, 1} -> {-1, +1}


def test_1_sharpness_of_a_linear_model_matches_the_closed_form_of_section_3():
    # For a decreasing margin loss l, max_{||d||<=rho} l(y<w+d,x>) = l(y<w,x> - rho ||x||).
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    w = torch.randn(5, generator=g, dtype=torch.float64)
    model, rho = LinearScore(w), 0.5
    logistic = lambda score, labels: F.softplus(-signs(labels) * score).mean()  # noqa: E731

    result = m_sharpness(model, [(x[i : i + 1], y[i : i + 1]) for i in range(6)], rho, criterion=logistic)

    margin = signs(y) * (x @ w)
    expected = (F.softplus(-(margin - rho * x.norm(dim=1))) - F.softplus(-margin)).mean().item()
    assert result["n_batches"] == 6
    assert result["sharpness"] == pytest.approx(expected, rel=1e-6)
    # The gradient of one point always points along y x: one step of size rho is already optimal.
    assert result["one_step_sharpness"] == pytest.approx(expected, rel=1e-6)
    assert result["suboptimality_factor"] == pytest.approx(1.0, rel=1e-6)
    assert torch.equal(model.w.detach(), w)


def test_m_sharpness_of_a_linear_loss_averages_ceil_n_over_m_batches():
    # With l_i(w) = -y_i <w, x_i>, the max over the ball of batch S is rho ||mean_S y_i x_i||.
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (10, 3, 2, 2), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 2, (10,), generator=g)
    points = Points(images, labels, mean=torch.zeros(3), std=torch.ones(3))
    batches = list(points.batches(4))
    model, rho = LinearScore(torch.randn(12, generator=g)), 0.2
    linear_loss = lambda score, labels: -(signs(labels).to(score) * score).mean()  # noqa: E731

    result = m_sharpness(model, batches, rho, ascent_steps=20, criterion=linear_loss)

    assert [len(y) for _, y in batches] == [4, 4, 2] and result["n_batches"] == math.ceil(10 / 4)
    x = normalize(images, torch.zeros(3), torch.ones(3)).flatten(1)
    per_batch = [
        rho * (signs(labels[s]).float()[:, None] * x[s]).mean(0).norm().item()
        for s in (slice(0, 4), slice(4, 8), slice(8, 10))
    ]
    assert result["per_batch"] == pytest.approx(per_batch, rel=1e-4)
    assert result["sharpness"] == pytest.approx(sum(per_batch) / 3, rel=1e-4)


# -- the solver on a network with BatchNorm ---------------------------------------------------------
def tiny_net(seed: int = 0, width: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("preact_resnet18", num_classes=3, width=width, norm="batch").eval()


def tiny_batch(n: int = 8):
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_iterates_never_leave_the_ball_and_the_model_comes_back_unchanged():
    model, (x, y) = tiny_net(), tiny_batch()
    before = copy.deepcopy(model.state_dict())
    rho = 0.3
    # 12 steps of 0.5 rho would travel 6 rho unprojected: the ball constraint is active.
    with batchnorm_mode(model, "train"):
        result = ascend(model, F.cross_entropy, x, y, rho, steps=12, step_size=0.5 * rho)
    assert result.max_delta_norm <= rho * (1 + 1e-5)
    assert global_norm(result.delta).item() == pytest.approx(rho, rel=1e-4)
    assert result.sharpness > 0
    with batchnorm_mode(model, "train"):  # the default step is 0.1 rho (App. D)
        assert m_sharpness(model, [(x, y)], rho, ascent_steps=1, one_step=False)["max_delta_norm"] == pytest.approx(
            0.1 * rho, rel=1e-5
        )
    after = model.state_dict()  # weights and BN running statistics, bit for bit
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training  # batchnorm_mode put the eval-mode model back


def test_one_ascent_step_of_size_rho_is_the_sam_perturbation_of_the_training_step():
    model, (x, y) = tiny_net(), tiny_batch()
    rho = 0.1
    params = list(model.parameters())
    with batchnorm_mode(model, "train"):
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
        single = ascend(model, F.cross_entropy, x, y, rho, steps=1, step_size=rho)
        chunked = m_sharpness(
            model, [(x[:4], y[:4]), (x[4:], y[4:])], rho, ascent_steps=1, ascent_step_mult=1.0, one_step=False
        )
    for d, e in zip(single.delta, [rho * g / global_norm(grads) for g in grads]):  # SAM's e = rho g / ||g||
        torch.testing.assert_close(d, e, rtol=1e-6, atol=1e-9)

    # The training step's m-SAM (m=4) perturbs each chunk the same way: same losses at w and w + e_c.
    trained = copy.deepcopy(model).train()
    step = sam_gradients(trained, list(trained.parameters()), F.cross_entropy, x, y, SAM(rho=rho, m=4), rho=rho)
    assert chunked["loss"] == pytest.approx(step.loss.item(), rel=1e-6)
    assert chunked["perturbed_loss"] == pytest.approx(step.perturbed_loss.item(), rel=1e-6)
    assert chunked["max_delta_norm"] == pytest.approx(step.perturbation_norm.item(), rel=1e-5)


def test_eval_mode_sharpness_uses_running_statistics():
    model, (x, y) = tiny_net(), tiny_batch()
    for mod in model.modules():  # statistics unlike the batch's, so the two modes must differ
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.fill_(0.5)
    with batchnorm_mode(model, "train"):
        train = m_sharpness(model, [(x, y)], 0.1, ascent_steps=3, one_step=False)
    with batchnorm_mode(model, "eval"):
        evaluated = m_sharpness(model, [(x, y)], 0.1, ascent_steps=3, one_step=False)
    with torch.no_grad():
        assert evaluated["loss"] == pytest.approx(F.cross_entropy(model.eval()(x), y).item(), rel=1e-6)
    assert train["loss"] != pytest.approx(evaluated["loss"], rel=1e-3)


# -- checkpoints --------------------------------------------------------------------------------------
def save_checkpoint(path, model: nn.Module, width: int) -> str:
    hparams = {
        "model": {"arch": "preact_resnet18", "width": width, "norm": "batch", "gn_groups": 2},
        "num_classes": 3,
        "method": {"name": "erm"},
    }
    state = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    torch.save({"hyper_parameters": hparams, "state_dict": state, "epoch": 0}, path)
    return str(path)


def test_loading_refuses_other_architectures_and_unsafe_files_in_one_line(tmp_path):
    a = load_checkpoint(save_checkpoint(tmp_path / "a.ckpt", tiny_net(width=2), width=2))
    b = load_checkpoint(save_checkpoint(tmp_path / "b.ckpt", tiny_net(width=4), width=4))
    require_same_architecture(a, load_checkpoint(save_checkpoint(tmp_path / "a2.ckpt", tiny_net(1, width=2), width=2)))
    failures = []
    with pytest.raises(ConfigError, match="another architecture") as err:
        require_same_architecture(a, b)
    failures.append(err)
    with pytest.raises(ConfigError, match="weights do not match its architecture.*width=4.*wrong shape") as err:
        load_checkpoint(save_checkpoint(tmp_path / "lies.ckpt", tiny_net(width=2), width=4))
    failures.append(err)
    torch.save(
        {"hyper_parameters": {"model": {}}, "state_dict": {}, "when": datetime.date(2022, 7, 1)}, tmp_path / "code.ckpt"
    )
    with pytest.raises(ConfigError, match="weights-only") as err:  # not unpickled: refused
        load_checkpoint(tmp_path / "code.ckpt")
    failures.append(err)
    with pytest.raises(ConfigError, match="no such checkpoint") as err:
        load_checkpoint(tmp_path / "missing.ckpt")
    failures.append(err)
    assert all("\n" not in str(e.value) for e in failures)


# -- interpolation ------------------------------------------------------------------------------------
def test_interpolation_reproduces_each_checkpoint_at_t_0_and_t_1(tmp_path):
    nets = [tiny_net(seed) for seed in (0, 1)]
    for net in nets:  # non-trivial running statistics, so that they matter at the end points
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    a, b = (load_checkpoint(save_checkpoint(tmp_path / f"{k}.ckpt", net, width=2)) for k, net in zip("ab", nets))
    arrays = make_synthetic(n_train=32, n_test=24, num_classes=3, seed=0)
    train, test = (select_points(arrays, split, None, 0, torch.device("cpu"), key=split) for split in ("train", "test"))
    model = a.build_backbone()

    curve = interpolation_curve(model, a.state_dict, b.state_dict, [0.0, 0.5, 1.0], train, test, batch_size=10)

    def own(ckpt, points):  # straight from the file, without the interpolation code
        net = ckpt.build_backbone()
        with torch.no_grad():
            logits = net(normalize(points.x, arrays.mean, arrays.std))
        return F.cross_entropy(logits, points.y).item(), (logits.argmax(1) != points.y).float().mean().item()

    for point, ckpt in ((curve[0], a), (curve[2], b)):
        assert (point["train_loss"], point["train_error"]) == pytest.approx(own(ckpt, train), rel=1e-6)
        assert (point["test_loss"], point["test_error"]) == pytest.approx(own(ckpt, test), rel=1e-6)
    assert curve[1]["train_loss"] not in (pytest.approx(curve[0]["train_loss"]), pytest.approx(curve[2]["train_loss"]))
    mid = interpolate_state(a.state_dict, b.state_dict, 0.5)["linear.weight"]
    torch.testing.assert_close(mid, (a.state_dict["linear.weight"] + b.state_dict["linear.weight"]) / 2)


def test_recomputed_bn_statistics_are_the_data_statistics():
    arrays = make_synthetic(n_train=16, n_test=8, num_classes=3, seed=0)
    points = select_points(arrays, "train", None, 0, torch.device("cpu"), key="train")
    bn = nn.Sequential(nn.BatchNorm2d(3))
    recompute_bn_stats(bn, points, batch_size=16)
    x = normalize(points.x, arrays.mean, arrays.std)
    torch.testing.assert_close(bn[0].running_mean, x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(bn[0].running_var, x.transpose(0, 1).flatten(1).var(dim=1))
    assert not bn.training


def test_recomputed_bn_statistics_weigh_every_image_the_same_whatever_the_batch_size():
    # 16 images in batches of at most 12: two batches of 8, not 12 + 4 (update_bn weighs batches equally).
    arrays = make_synthetic(n_train=16, n_test=8, num_classes=3, seed=0)
    points = select_points(arrays, "train", None, 0, torch.device("cpu"), key="train")
    assert [len(y) for _, y in points.batches(12, even=True)] == [8, 8]
    assert [len(y) for _, y in points.batches(12)] == [12, 4]
    bn = nn.Sequential(nn.BatchNorm2d(3))
    recompute_bn_stats(bn, points, batch_size=12)
    x = normalize(points.x, arrays.mean, arrays.std)
    torch.testing.assert_close(bn[0].running_mean, x.mean(dim=(0, 2, 3)))


# -- both commands on train.py checkpoints -------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_checkpoints(tmp_path_factory):
    """Two checkpoints of `train.py experiment=smoke`, one SAM and one ERM, trained for 2 batches."""
    from train import train

    root = tmp_path_factory.mktemp("smoke")
    paths = []
    for method in ("sam", "erm"):
        run_dir = root / method
        train(
            compose_config(
                [
                    *TINY,
                    "++trainer.limit_train_batches=2",
                    "data.batch_size=32",
                    f"method={method}",
                    f"paths.output_dir={run_dir}",
                ]
            )
        )
        paths.append(run_dir / "checkpoints" / "last.ckpt")
    return paths


def start(module: str, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", module, "progress=false", "device=cpu", *overrides],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.slow
def test_both_commands_write_json_and_png_from_two_smoke_checkpoints(smoke_checkpoints, tmp_path):
    sam_ckpt, erm_ckpt = smoke_checkpoints
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in smoke_checkpoints}
    # The sharpness command as a user runs it (its start-up, mostly imports, takes most of this
    # test); meanwhile the interpolation command in-process, through its Hydra config.
    sharp = start(
        "sam_lightning.analysis.sharpness",
        f"ckpt=[{sam_ckpt},{erm_ckpt}]",
        "labels=[SAM,ERM]",
        "rho=[0.05,0.1]",
        "m=[8]",
        "n=8",
        "ascent_steps=2",
        "bn=[train,eval]",
        f"out_dir={tmp_path / 'sharpness'}",
    )
    interpolation_run(
        compose_config(
            [
                f"ckpt_a={erm_ckpt}",
                f"ckpt_b={sam_ckpt}",
                "t=[-0.25,0,0.5,1,1.25]",
                "train_points=32",
                "test_points=32",
                "bn_points=32",
                "progress=false",
                "device=cpu",
                f"out_dir={tmp_path / 'interpolation'}",
            ],
            config_name="interpolation",
            tree="analysis",
        )
    )
    curve = json.loads((tmp_path / "interpolation" / "interpolation.json").read_text())
    assert [p["t"] for p in curve["curve"]] == [-0.25, 0.0, 0.5, 1.0, 1.25]
    assert curve["settings"]["recompute_bn"] is True and curve["settings"]["train_points"] == 32
    assert (
        all(math.isfinite(p[k]) for p in curve["curve"] for k in ("train_loss", "test_loss")) and curve["distance"] > 0
    )
    assert (tmp_path / "interpolation" / "interpolation.png").read_bytes()[:4] == b"\x89PNG"

    rc, err = finish(sharp)
    assert rc == 0, err[-2000:]
    out = json.loads((tmp_path / "sharpness" / "sharpness.json").read_text())
    assert [c["label"] for c in out["checkpoints"]] == ["SAM", "ERM"] and out["checkpoints"][0]["data"] == "synthetic"
    assert len(out["results"]) == 2 * 2 * 2  # checkpoints x bn modes x radii
    for r in out["results"]:
        assert r["n_batches"] == 1 and math.isfinite(r["sharpness"]) and r["max_delta_norm"] <= r["rho"] * (1 + 1e-5)
        # Fig. 3's suboptimality factor: the sharpness of the multi-step ascent over that of one step
        assert r["one_step_sharpness"] > 0 and r["suboptimality_factor"] == pytest.approx(
            r["sharpness"] / r["one_step_sharpness"], rel=1e-12
        )
    assert (tmp_path / "sharpness" / "sharpness.png").read_bytes()[:4] == b"\x89PNG"
    # Analysis only reads checkpoints (train-mode BN statistics are restored in memory, never saved).
    assert digest == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in smoke_checkpoints}


@pytest.mark.slow
def test_interpolation_command_refuses_another_architecture_before_any_work(smoke_checkpoints, tmp_path):
    other = save_checkpoint(tmp_path / "other.ckpt", tiny_net(width=2), width=2)
    cfg = compose_config(
        [f"ckpt_a={smoke_checkpoints[0]}", f"ckpt_b={other}", f"out_dir={tmp_path / 'out'}"],
        config_name="interpolation",
        tree="analysis",
    )
    with pytest.raises(ConfigError, match="another architecture") as err:
        interpolation_run(cfg)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "data,used",
    [
        # a conf/train/data option replaces the run's data settings
        (["data=synthetic", "data.n_train=512", "data.n_test=128"], {"name": "synthetic", "n_train": 512}),
        # data.root alone moves the run's own data: its other settings are kept
        (["data.root=/elsewhere"], {"name": "synthetic", "n_train": 256, "root": "/elsewhere"}),
    ],
    ids=["data_option", "data_root_alone"],
)
def test_sharpness_takes_the_data_options_docs_analysis_md_documents(
    smoke_checkpoints, tmp_path, data, used, monkeypatch
):
    from sam_lightning.analysis import sharpness
    from sam_lightning.run.checkpoints import data_spec_for

    for choice in (["data=imagefolder", "data.root=/some/tree"], ["data=cifar10"]):  # compose, as documented
        assert (
            compose_config(["ckpt=x", *choice], config_name="sharpness", tree="analysis").data.name
            == choice[0].split("=")[1]
        )
    seen = []  # the data each checkpoint is read with

    def recorded(ckpt, override):
        seen.append(data_spec_for(ckpt, override))
        return seen[-1]

    monkeypatch.setattr(sharpness, "data_spec_for", recorded)
    cfg = compose_config(
        [
            f"ckpt={smoke_checkpoints[0]}",
            *data,
            "rho=[0.1]",
            "m=[8]",
            "n=8",
            "ascent_steps=1",
            "progress=false",
            "device=cpu",
            f"out_dir={tmp_path}",
        ],
        config_name="sharpness",
        tree="analysis",
    )
    out = sharpness.run(cfg)
    assert out["checkpoints"][0]["data"] == "synthetic" and len(out["results"]) == 1
    assert len(seen) == 1 and {key: getattr(seen[0], key) for key in used} == used


def test_sharpness_over_training_plots_each_batchnorm_mode_against_the_checkpoints_epochs(monkeypatch, tmp_path):
    # Fig. 19's picture: one run's periodic checkpoints at one rho, x the epochs done (not rho).
    from sam_lightning.reporting import plots

    figures = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi=110: figures.setdefault("fig", fig) and path)
    epochs = {"run/epoch019": 20, "run/epoch009": 10}
    records = [
        {"checkpoint": label, "bn": bn, "m": 64, "rho": 0.1, "ascent_steps": 10, "sharpness": s, "per_batch": [s, s]}
        for label, bn, s in (
            ("run/epoch019", "train", 0.2),
            ("run/epoch009", "train", 0.1),
            ("run/epoch019", "eval", 0.4),
            ("run/epoch009", "eval", 0.8),
        )
    ]
    plots.sharpness_over_training(records, epochs, tmp_path / "sharpness.png")
    (ax,) = figures["fig"].axes
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
    assert lines == {"BN train": ([10, 20], [0.1, 0.2]), "BN eval": ([10, 20], [0.8, 0.4])}
    assert ax.get_xlabel() == "epoch" and "rho 0.1" in ax.get_title()
