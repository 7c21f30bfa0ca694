"""n-SAM, random perturbations, multi-step ascent, ASAM, rho schedule, switching, label noise,
fine-tuning: each against a hand-written reference or a hand-made case."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_noise_figures_add_up, fixed_batch, mlp

from sam_lightning.core.step import global_norm, sam_gradients
from sam_lightning.data import DataSpec
from sam_lightning.data.label_noise import flip_labels, noise_fit, subset_indices
from sam_lightning.entry import instantiate_method
from sam_lightning.settings.config import ConfigError, ModelSpec, OptimSpec
from sam_lightning.variants import ASAM, NSAM, SAM, RandomPerturbation
from train import train


def grads_of(model, x, y, at=None):
    """Gradient of the mean cross-entropy at the model's weights (+ `at` if given), by hand."""
    net = copy.deepcopy(model)
    if at is not None:
        with torch.no_grad():
            for p, e in zip(net.parameters(), at):
                p.add_(e)
    loss = F.cross_entropy(net(x), y)
    return torch.autograd.grad(loss, list(net.parameters()))


def step_grads(model, x, y, **kwargs):
    net = copy.deepcopy(model)
    sam_gradients(net, list(net.parameters()), F.cross_entropy, x, y, rho=kwargs["variant"].rho, **kwargs)
    return [p.grad for p in net.parameters()], net


def assert_grads_close(a, b):
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, atol=1e-9, rtol=0)


def test_nsam_takes_the_ascent_gradient_on_the_other_batch():
    model = mlp()
    x, y = fixed_batch()
    g = torch.Generator().manual_seed(9)
    xo, yo = torch.randn(16, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g)
    g_other = grads_of(model, xo, yo)
    e = [0.5 * g / global_norm(g_other) for g in g_other]
    got, _ = step_grads(model, x, y, variant=SAM(rho=0.5), ascent_inputs=xo, ascent_targets=yo)
    assert_grads_close(got, grads_of(model, x, y, at=e))
    same, _ = step_grads(model, x, y, variant=SAM(rho=0.5))
    assert any(not torch.allclose(a, b) for a, b in zip(got, same))


def test_one_ascent_step_of_multiplier_one_is_sam():
    model = mlp(norm=True)
    x, y = fixed_batch()
    a, _ = step_grads(model, x, y, variant=SAM(rho=0.5, m=4))
    b, _ = step_grads(model, x, y, variant=SAM(rho=0.5, m=4, ascent_steps=1, ascent_step_mult=1.0))
    for u, v in zip(a, b):
        assert torch.equal(u, v)


def test_multi_step_ascent_matches_projected_steps_by_hand_and_stays_in_the_ball():
    model, rho, step = mlp(), 0.3, 0.3 * 0.7
    x, y = fixed_batch()
    e = [torch.zeros_like(p) for p in model.parameters()]
    for _ in range(3):
        g = grads_of(model, x, y, at=e)
        e = [ei + step * gi / global_norm(g) for ei, gi in zip(e, g)]
        norm = global_norm(e)
        e = [ei * min(1.0, rho / float(norm)) for ei in e]
    out_net = copy.deepcopy(model)
    out = sam_gradients(
        out_net,
        list(out_net.parameters()),
        F.cross_entropy,
        x,
        y,
        SAM(rho=rho, ascent_steps=3, ascent_step_mult=0.7),
        rho=rho,
    )
    assert_grads_close([p.grad for p in out_net.parameters()], grads_of(model, x, y, at=e))
    assert float(out.perturbation_norm) <= rho + 1e-9
    big = copy.deepcopy(model)  # large steps must be projected back onto the ball
    out = sam_gradients(
        big, list(big.parameters()), F.cross_entropy, x, y, SAM(rho=rho, ascent_steps=5, ascent_step_mult=3.0), rho=rho
    )
    assert float(out.perturbation_norm) == pytest.approx(rho, abs=1e-9)


def test_asam_perturbation_formula():
    model, rho, eta = mlp(), 0.5, 0.01
    x, y = fixed_batch()
    names = [n for n, _ in model.named_parameters()]
    scaled = tuple(n.endswith("weight") for n in names)
    g = grads_of(model, x, y)
    t = [p.detach().abs() + eta if s else torch.ones_like(p) for p, s in zip(model.parameters(), scaled)]
    tg_norm = torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, g)))
    e = [rho * ti * ti * gi / tg_norm for ti, gi in zip(t, g)]
    got, _ = step_grads(model, x, y, variant=ASAM(rho=rho, eta=eta))
    assert_grads_close(got, grads_of(model, x, y, at=e))
    assert scaled == (True, False, True, False)  # weights scaled, biases not


@pytest.mark.parametrize("m", [None, 4])
def test_random_perturbation_has_norm_rho_and_restores_weights(m):
    model = mlp(norm=True)
    x, y = fixed_batch()
    before = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(5)
    out = sam_gradients(
        model,
        list(model.parameters()),
        F.cross_entropy,
        x,
        y,
        RandomPerturbation(rho=0.25, m=m, noise="sphere"),
        rho=0.25,
    )
    assert float(out.perturbation_norm) == pytest.approx(0.25, rel=1e-9)
    assert float(out.grad_norm) == 0.0  # no ascent gradient was computed
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)
    e = RandomPerturbation(rho=0.0, noise="gaussian", sigma=0.5).perturbation({"w": torch.zeros(100_000)}, None, 0.0)
    assert float(e["w"].std()) == pytest.approx(0.5, rel=0.02)


def test_random_perturbation_defaults_to_the_papers_gaussian_noise(tiny_cfg):
    # The paper's code adds N(0, sigma^2) to every weight; a point on the rho-sphere is the option.
    method = RandomPerturbation()
    assert method.noise == "gaussian"
    assert tiny_cfg("method=random").method.noise == "gaussian"
    torch.manual_seed(0)
    e = method.perturbation({"w": torch.zeros(100_000)}, None, method.rho)
    assert float(e["w"].std()) == pytest.approx(method.sigma, rel=0.02) and float(e["w"].mean()) == pytest.approx(
        0.0, abs=1e-3 * method.sigma * 10
    )


def test_constant_rho_is_projected_onto_the_ball_and_project_false_is_not():
    from sam_lightning.variants import projected_ascent

    rho = 0.3
    for g_norm in (5.0, 0.5):  # ||rho g|| above and below rho
        g = {"a": torch.tensor([3.0, 4.0], dtype=torch.float64) * g_norm / 5.0}
        e = projected_ascent({"a": torch.zeros(2, dtype=torch.float64)}, lambda _e, g=g: g, rho, normalize=False)
        assert float(torch.linalg.vector_norm(e["a"])) == pytest.approx(min(rho * g_norm, rho), rel=1e-9)
        free = projected_ascent(
            {"a": torch.zeros(2, dtype=torch.float64)}, lambda _e, g=g: g, rho, normalize=False, project=False
        )
        assert float(torch.linalg.vector_norm(free["a"])) == pytest.approx(rho * g_norm, rel=1e-9)
        torch.testing.assert_close(e["a"] / torch.linalg.vector_norm(e["a"]), g["a"] / g_norm)


@pytest.mark.slow
def test_rho_schedule_follows_the_learning_rate(tiny_cfg):
    out = train(
        tiny_cfg("trainer.max_epochs=4", "optim.schedule=piecewise", "method.rho_schedule=lr", "method.rho=0.2")
    )
    assert [h["train/rho"] for h in out["history"]] == pytest.approx([0.2, 0.2, 0.02, 0.002])
    constant = train(
        tiny_cfg(
            "trainer.max_epochs=2", "method.rho=0.2", "paths.output_dir=" + out["config"]["paths"]["output_dir"] + "2"
        )
    )
    assert [h["train/rho"] for h in constant["history"]] == pytest.approx([0.2, 0.2])


@pytest.mark.slow
def test_switching_happens_at_the_planned_epoch_also_after_resume(tmp_path, tiny_cfg):
    run = tmp_path / "switch"
    common = ["method=erm_to_sam", "method.switch_at=0.5", f"paths.output_dir={run}"]
    whole = train(tiny_cfg(*common, "trainer.max_epochs=4"))
    assert [h["train/perturbed"] for h in whole["history"]] == [0.0, 0.0, 1.0, 1.0]
    # Planned for 4 epochs (switch at epoch 2), stopped after the first, resumed: the switch stays
    # at epoch 2. Resuming with another length (6: the switch would move to 3) is refused.
    train(tiny_cfg(*common, "trainer.max_epochs=4", "trainer.max_steps=2", f"paths.output_dir={tmp_path / 'r'}"))
    resume = [f"paths.output_dir={tmp_path / 'r'}", f"ckpt_path={tmp_path / 'r/checkpoints/last.ckpt'}"]
    with pytest.raises(ConfigError, match="trainer.max_epochs=4"):
        train(tiny_cfg(*common, "trainer.max_epochs=6", *resume))
    resumed = train(tiny_cfg(*common, "trainer.max_epochs=4", *resume))
    assert [h["train/perturbed"] for h in resumed["history"]] == [0.0, 0.0, 1.0, 1.0]
    back = train(
        tiny_cfg(
            "method=sam_to_erm", "method.switch_at=0.5", "trainer.max_epochs=2", f"paths.output_dir={tmp_path / 'b'}"
        )
    )
    assert [h["train/perturbed"] for h in back["history"]] == [1.0, 0.0]


def test_label_noise_flips_exactly_the_fraction_never_to_the_true_class():
    labels = torch.arange(1000) % 10
    noisy, idx = flip_labels(labels, 0.6, 10, seed=3)
    assert len(idx) == 600 and int((noisy != labels).sum()) == 600
    assert torch.equal(torch.nonzero(noisy != labels).flatten(), idx)
    again, idx2 = flip_labels(labels, 0.6, 10, seed=3)
    assert torch.equal(again, noisy) and torch.equal(idx, idx2)
    assert not torch.equal(flip_labels(labels, 0.6, 10, seed=4)[1], idx)
    assert len(set(noisy[idx].tolist())) == 10  # all classes are reachable
    assert torch.equal(flip_labels(labels, 0.0, 10, seed=3)[0], labels)
    assert len(subset_indices(1000, 0.25, 0)) == 250 and torch.equal(
        subset_indices(1000, 0.25, 0), subset_indices(1000, 0.25, 0)
    )


def test_noisy_fit_counts_a_hand_made_case():
    true = torch.tensor([0, 1, 2, 3, 4, 5])
    labels = torch.tensor([0, 1, 2, 9, 8, 7])  # the last three are flipped
    preds = torch.tensor([0, 5, 2, 9, 4, 1])  # fits one flipped label (9), one true label (4)
    clean, fitted = noise_fit(preds, labels, true)
    assert clean.tolist() == [True, True, True, False, False, False]
    assert fitted.tolist() == [False, False, False, True, False, False]


@pytest.mark.slow
def test_label_noise_run_records_noise_figures(tiny_cfg):
    out = train(tiny_cfg("data.label_noise=0.6", "trainer.max_epochs=2"))
    run_dir = out["config"]["paths"]["output_dir"]
    saved = json.load(open(f"{run_dir}/noisy_labels.json"))
    assert len(saved["indices"]) == round(0.6 * 256) == out["data_sizes"]["noisy_train"]
    assert all(a != b for a, b in zip(saved["noisy_labels"], saved["true_labels"]))
    assert [h["epoch"] for h in out["history"]] == [0, 1]
    for row in out["history"]:
        assert_noise_figures_add_up(row, out["data_sizes"])
    last = out["history"][-1]
    assert (out["final_train_noisy_fit"], out["final_train_clean_error"]) == (
        last["train/noisy_fit"],
        last["train/clean_error"],
    )


@pytest.mark.parametrize(
    "values,match",
    [
        ({"_target_": "sam_lightning.variants.SAM", "ascent_steps": 0}, "method.ascent_steps"),
        (
            {"_target_": "sam_lightning.variants.SwitchedSAM", "order": "erm_to_sam", "switch_at": 1.5},
            "method.switch_at",
        ),
        ({"_target_": "sam_lightning.variants.SAM", "name": "foo"}, "unknown key.*method.name"),
        ({"_target_": "sam_lightning.variants.NSAM", "ascent_batch": "next"}, "method.ascent_batch"),
        ({"_target_": "sam_lightning.variants.ERM", "m": 4}, "unknown key.*method.m"),
        ({"_target_": "sam_lightning.variants.Nope"}, "method._target_"),
        ({"rho": 0.1}, "method._target_"),
    ],
)
def test_bad_method_parameters_fail_with_one_line(values, match):
    with pytest.raises(ConfigError, match=match) as err:
        instantiate_method(values)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("noise,fraction", [(1.0, 1.0), (-0.1, 1.0), (0.0, 0.0)])
def test_bad_data_parameters_fail_before_any_data_is_read(noise, fraction, tiny_cfg):
    with pytest.raises(ConfigError):
        DataSpec(name="synthetic", n_train=64, n_test=8, num_classes=10, label_noise=noise, train_fraction=fraction)
    with pytest.raises(ConfigError):
        train(
            tiny_cfg(
                f"data.label_noise={noise}",
                f"data.train_fraction={fraction}",
                "data.root=/nonexistent",
                "data.name=cifar10",
            )
        )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["erm", "sam", "nsam", "random", "asam", "erm_to_sam", "sam_to_erm"])
def test_every_method_trains_end_to_end(method, tiny_cfg):
    out = train(tiny_cfg(f"method={method}", "method.ascent_steps=2" if method == "sam" else "seed=0"))
    assert out["status"] == "finished" and out["final_test_error"] is not None


@pytest.mark.slow
def test_nsam_with_random_ascent_batch_trains(tiny_cfg):
    assert train(tiny_cfg("method=nsam", "method.ascent_batch=random"))["status"] == "finished"


@pytest.mark.slow
def test_init_from_loads_weights_only_and_refuses_another_architecture(tmp_path, tiny_cfg):
    from sam_lightning.training.run_spec import build_run
    from train import make_model

    source = train(tiny_cfg(f"paths.output_dir={tmp_path / 'a'}"))
    ckpt = tmp_path / "a/checkpoints/last.ckpt"
    module = make_model(build_run(tiny_cfg(f"paths.output_dir={tmp_path / 'b'}", f"init_from={ckpt}")))
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    for k, v in module.backbone.state_dict().items():
        assert torch.equal(v, saved[f"backbone.{k}"])
    with pytest.raises(ConfigError, match="init_from"):
        build_run(tiny_cfg(f"paths.output_dir={tmp_path / 'b'}", "model.width=8", f"init_from={ckpt}"))
    tuned = train(tiny_cfg(f"paths.output_dir={tmp_path / 'b'}", f"+init_from={ckpt}"))
    assert tuned["status"] == "finished" and source["status"] == "finished"


def test_nsam_system_takes_the_previous_batch_and_the_first_step_its_own():
    from sam_lightning.training.module import SAMClassifier

    module = SAMClassifier(ModelSpec("preact_resnet18", width=2), NSAM(), OptimSpec(), num_classes=3, max_epochs=1)
    batches = [(torch.full((4, 1), float(i)), torch.full((4,), i)) for i in range(3)]
    assert module._ascent_batch(*batches[0]) is None  # first step: SAM on its own batch
    for previous, current in zip(batches, batches[1:]):
        xa, ya = module._ascent_batch(*current)
        assert torch.equal(xa, previous[0]) and torch.equal(ya, previous[1])


@pytest.mark.parametrize("m", [None, 4])
def test_gsam_descent_gradient_matches_the_formula(m):
    # GSAM (Zhuang et al., 2022): per chunk, d = h - alpha * (g - <g, h> / ||h||^2 h), with g the
    # gradient at w, h the gradient at w + rho g / ||g||; the step uses the mean over chunks.
    from sam_lightning.variants import GSAM

    model, rho, alpha = mlp(), 0.5, 0.3
    x, y = fixed_batch()
    size = m or len(y)
    expected = [torch.zeros_like(p) for p in model.parameters()]
    for start in range(0, len(y), size):
        xc, yc = x[start : start + size], y[start : start + size]
        g = grads_of(model, xc, yc)
        h = grads_of(model, xc, yc, at=[rho * gi / global_norm(g) for gi in g])
        along = sum((gi * hi).sum() for gi, hi in zip(g, h)) / sum((hi * hi).sum() for hi in h)
        for acc, gi, hi in zip(expected, g, h):
            acc += (hi - alpha * (gi - along * hi)) * size / len(y)
    got, _ = step_grads(model, x, y, variant=GSAM(rho=rho, alpha=alpha, m=m))
    assert_grads_close(got, expected)
    sam, _ = step_grads(model, x, y, variant=SAM(rho=rho, m=m))
    assert any(not torch.allclose(a, b) for a, b in zip(got, sam))  # alpha > 0 changes the step
