"""The vectorized m-SAM engine (torch.vmap over chunks) against the chunk loop, in float64.

Both engines run the same per-chunk code; these tests pin that the batching is right: chunk c of
the batch meets e_c (not another chunk's), each chunk normalizes with its own statistics, and the
BatchNorm running statistics end where the loop's sequence of updates leaves them.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from helpers import batches, fit, system
from torch import nn

from sam_lightning.core.step import sam_gradients
from sam_lightning.settings.config import ModelSpec
from sam_lightning.variants import ASAM, GSAM, NSAM, SAM, RandomPerturbation

TOL = dict(atol=1e-10, rtol=0)


def conv_net(norm: str) -> nn.Module:
    torch.manual_seed(0)
    layer = {"group": lambda: nn.GroupNorm(2, 4), "batch": lambda: nn.BatchNorm2d(4), "none": nn.Identity}[norm]
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        layer(),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2),
        layer(),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).double()


def images(n: int = 16, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def l2(weights):
    return 0.5 * 0.05 * sum((w**2).sum() for w in weights)


def run(model, variant, engine, *, other=None, seed=None, regularizer=l2, x=None, y=None):
    """One step with `engine`; returns the gradients, the buffers and what the step reported."""
    net = copy.deepcopy(model)
    if x is None:
        x, y = images()
    if seed is not None:
        torch.manual_seed(seed)
    xa, ya = other if other is not None else (None, None)
    out = sam_gradients(
        net,
        list(net.parameters()),
        F.cross_entropy,
        x,
        y,
        replace(variant, engine=engine),
        rho=variant.rho,
        ascent_inputs=xa,
        ascent_targets=ya,
        regularizer=regularizer,
    )
    return [p.grad for p in net.parameters()], {k: b.clone() for k, b in net.named_buffers()}, out


def assert_same(a, b):
    (ga, ba, oa), (gb, bb, ob) = a, b
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, **TOL)
    for k in ba:
        torch.testing.assert_close(ba[k].double(), bb[k].double(), **TOL)
    for field in ("logits", "loss", "objective", "grad_norm", "perturbation_norm", "perturbed_loss"):
        torch.testing.assert_close(getattr(oa, field), getattr(ob, field), **TOL)


VARIANTS = {
    "sam": SAM(rho=0.5),
    "sam_const": SAM(rho=0.3, normalize=False),
    "multi_step": SAM(rho=0.3, ascent_steps=3, ascent_step_mult=0.7),
    "asam": ASAM(rho=0.5, eta=0.01),
    "gsam": GSAM(rho=0.5, alpha=0.3),
    "random": RandomPerturbation(rho=0.25),
    "random_gaussian": RandomPerturbation(rho=0.0, noise="gaussian", sigma=0.01),
}


@pytest.mark.parametrize("norm", ["group", "none"])
@pytest.mark.parametrize("m", [1, 4, 16])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_vmap_equals_loop_for_every_variant(name, m, norm):
    model, variant = conv_net(norm), replace(VARIANTS[name], m=m)
    loop, vmapped = run(model, variant, "loop", seed=3), run(model, variant, "vmap", seed=3)
    assert_same(loop, vmapped)
    assert any(float(g.abs().max()) > 0 for g in loop[0])


@pytest.mark.parametrize("m", [1, 4])
def test_vmap_equals_loop_for_nsam(m):
    model, other = conv_net("group"), images(seed=7)
    assert_same(
        run(model, NSAM(rho=0.5, m=m), "loop", other=other), run(model, NSAM(rho=0.5, m=m), "vmap", other=other)
    )


@pytest.mark.parametrize("bn_ascent_updates_stats", [True, False])
@pytest.mark.parametrize("ascent_steps", [1, 2])
@pytest.mark.parametrize("chunks_per_pass", [None, 3])
def test_vmap_batchnorm_uses_per_chunk_statistics_and_the_loops_running_statistics(
    bn_ascent_updates_stats, ascent_steps, chunks_per_pass
):
    model = conv_net("batch")
    x, y = images(n=24)
    variant = SAM(
        rho=0.5,
        m=4,
        ascent_steps=ascent_steps,
        bn_ascent_updates_stats=bn_ascent_updates_stats,
        chunks_per_pass=chunks_per_pass,
    )
    loop, vmapped = run(model, variant, "loop", x=x, y=y), run(model, variant, "vmap", x=x, y=y)
    assert_same(loop, vmapped)
    passes = 6 * ((ascent_steps if bn_ascent_updates_stats else 0) + 1)  # 6 chunks
    assert int(vmapped[1]["1.num_batches_tracked"]) == passes
    assert not torch.allclose(vmapped[1]["1.running_mean"], model[1].running_mean)


def test_vmap_batchnorm_differs_from_whole_batch_statistics():
    # Guards the test above: normalizing over the whole batch (one chunk) gives another step.
    model = conv_net("batch")
    chunked = run(model, SAM(rho=0.5, m=4), "vmap")
    whole = run(model, SAM(rho=0.5, m=16), "vmap")
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(chunked[0], whole[0]))


def test_chunks_meet_their_own_perturbation():
    # Reversing the chunk order of the batch only reverses the per-chunk reports.
    model = conv_net("group")
    x, y = images()
    order = torch.cat([torch.arange(12, 16), torch.arange(8, 12), torch.arange(4, 8), torch.arange(0, 4)])
    a = run(model, SAM(rho=0.5, m=4), "vmap", x=x, y=y)
    b = run(model, SAM(rho=0.5, m=4), "vmap", x=x[order], y=y[order])
    torch.testing.assert_close(a[2].logits[order], b[2].logits, **TOL)
    for u, v in zip(a[0], b[0]):
        torch.testing.assert_close(u, v, atol=1e-10, rtol=1e-9)


def test_auto_engine_falls_back_to_the_loop_for_a_single_chunk_and_foreign_buffers(caplog):
    from sam_lightning.core.engine import choose_engine

    model = conv_net("group")
    assert choose_engine(SAM(m=4), model, 4, 4) == "vmap"
    assert choose_engine(SAM(m=32), model, 4, 32) == "loop"  # large chunks: the loop is faster on a CPU
    assert choose_engine(SAM(m=32, engine="vmap"), model, 4, 32) == "vmap"
    assert choose_engine(SAM(m=None), model, 1, 16) == "loop"
    assert choose_engine(SAM(m=4, engine="loop"), model, 4, 4) == "loop"
    last = copy.deepcopy(model).to(memory_format=torch.channels_last)  # vmap is slower there on a CPU
    assert (choose_engine(SAM(m=4), last, 4, 4), choose_engine(SAM(m=4, engine="vmap"), last, 4, 4)) == ("loop", "vmap")
    model.register_buffer("counter", torch.zeros(1))
    with caplog.at_level("WARNING"):
        assert choose_engine(SAM(m=4, engine="vmap"), model, 4, 4) == "loop"
    assert "not a BatchNorm statistic" in caplog.text


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_lightning_system_gives_the_same_weights_with_either_engine(norm):
    model = ModelSpec("preact_resnet18", width=2, norm=norm, gn_groups=2)
    _, _, loader = batches(n_batches=3)
    runs = {}
    for engine in ("loop", "vmap"):
        module = system(SAM(rho=0.2, m=2, engine=engine), model=model)
        fit(module, loader)
        runs[engine] = module.backbone.state_dict()
    for k, v in runs["loop"].items():
        torch.testing.assert_close(runs["vmap"][k].double(), v.double(), **TOL)


def test_vmap_runs_batchnorm_under_bf16_autocast_as_the_loop():
    # Mixed precision (trainer.precision=bf16-mixed): autocast hands BatchNorm bfloat16 activations
    # while the per-chunk running statistics are float32. The two engines agree to bfloat16's
    # precision (about 1% per value here), not bit for bit.
    model = conv_net("batch").float()
    x, y = images()
    x = x.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loop, vmapped = (run(model, SAM(rho=0.5, m=4), engine, x=x, y=y) for engine in ("loop", "vmap"))
    g_loop, g_vmap = (torch.cat([g.flatten() for g in r[0]]) for r in (loop, vmapped))
    assert float((g_vmap - g_loop).norm() / g_loop.norm()) < 0.1
    for k, b in loop[1].items():
        torch.testing.assert_close(vmapped[1][k], b, atol=2e-3, rtol=0)
    assert float(vmapped[2].loss) == pytest.approx(float(loop[2].loss), rel=1e-2)
    net = copy.deepcopy(model)  # and the step leaves no hook behind
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sam_gradients(net, list(net.parameters()), F.cross_entropy, x, y, SAM(rho=0.5, m=4, engine="vmap"), rho=0.5)
    assert not any(m._forward_pre_hooks for m in net.modules())


@pytest.mark.parametrize("engine", ["loop", "vmap"])
def test_a_step_formats_no_tensor(engine, monkeypatch):
    # torch.vmap names a callable that has no __name__ by its repr: a vmapped object holding the weights
    # would print every one of them on every step (a 10x slower 4-SAM step, seen in make bench).
    def refuse(self, *args, **kwargs):
        raise AssertionError("a tensor was formatted during the step")

    monkeypatch.setattr(torch.Tensor, "__repr__", refuse)
    monkeypatch.setattr(torch.Tensor, "__format__", refuse)
    run(conv_net("group"), SAM(rho=0.5, m=4), engine, seed=3)
