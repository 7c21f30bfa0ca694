"""The SAM update against a hand-written reference on tiny models with fixed data.

The reference below does not use sam_lightning.sam: it evaluates the loss of a copy of the model
at explicit weight vectors (torch.func.functional_call), forms every chunk's perturbation from the
formula, and applies the first SGD-with-momentum step by hand: w1 = w0 - lr * mean_c grad L_c(w0 + e_c).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sam_lightning.sam import (
    chunk_slices,
    erm_gradients,
    frozen_bn_running_stats,
    sam_gradients,
)
from sam_lightning.variants import SAM

LR = 0.1


def mlp(norm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(6, 8)] + ([nn.BatchNorm1d(8)] if norm else []) + [nn.Tanh(), nn.Linear(8, 3)]
    return nn.Sequential(*layers).double()


def fixed_batch(n: int = 16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def reference_update(model, x, y, *, rho, m, normalize, l2, ascent_updates_bn=True, return_buffers=False):
    """Hand-written m-SAM step, returns the new weights {name: tensor} (and BN buffers)."""
    net = copy.deepcopy(model)
    w0 = {k: v.detach().clone() for k, v in net.named_parameters()}
    names = list(w0)

    def objective(w, xc, yc):
        loss = F.cross_entropy(functional_call(net, w, (xc,)), yc)
        return loss + 0.5 * l2 * sum((w[k] ** 2).sum() for k in names)

    def grad(w, xc, yc):
        w = {k: v.clone().requires_grad_(True) for k, v in w.items()}
        return dict(zip(names, torch.autograd.grad(objective(w, xc, yc), [w[k] for k in names])))

    m = m or len(y)
    descent = {k: torch.zeros_like(v) for k, v in w0.items()}
    chunks = range(0, len(y), m)
    for start in chunks:
        xc, yc = x[start : start + m], y[start : start + m]
        saved = {k: b.clone() for k, b in net.named_buffers()}
        g = grad(w0, xc, yc)  # in train mode this forward updates BN running statistics...
        if not ascent_updates_bn:  # ...unless the ascent pass is told not to
            for k, b in net.named_buffers():
                b.copy_(saved[k])
        norm = torch.sqrt(sum((g[k] ** 2).sum() for k in names))
        # Constant rho (normalize=False): e = rho g, projected onto ||e|| <= rho as the paper's code does.
        scale = rho / norm if normalize else rho * min(1.0, 1.0 / float(norm))
        d = grad({k: w0[k] + scale * g[k] for k in names}, xc, yc)
        for k in names:
            descent[k] += d[k] / len(chunks)
    # First SGD step with momentum 0.9: the momentum buffer starts as the gradient itself.
    new = {k: w0[k] - LR * descent[k] for k in names}
    return (new, dict(net.named_buffers())) if return_buffers else new


def library_update(model, x, y, *, rho, m, normalize, l2):
    net = copy.deepcopy(model)
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=LR, momentum=0.9)
    reg = (lambda ws: 0.5 * l2 * sum((p**2).sum() for p in ws)) if l2 else None
    sam_gradients(net, params, F.cross_entropy, x, y, rho=rho, m=m, normalize=normalize, regularizer=reg)
    opt.step()
    return dict(net.named_parameters())


@pytest.mark.parametrize("m", [None, 4])
@pytest.mark.parametrize("normalize,rho", [(True, 0.5), (False, 0.3)])
@pytest.mark.parametrize("l2", [0.0, 0.05])
@pytest.mark.parametrize("norm", [False, True], ids=["mlp", "mlp_bn"])
def test_sam_update_matches_reference(m, normalize, rho, l2, norm):
    model = mlp(norm)
    x, y = fixed_batch()
    expected = reference_update(model, x, y, rho=rho, m=m, normalize=normalize, l2=l2)
    got = library_update(model, x, y, rho=rho, m=m, normalize=normalize, l2=l2)
    w0 = dict(model.named_parameters())
    assert any(not torch.allclose(expected[k], w0[k]) for k in expected), "the step must move the weights"
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], atol=1e-6, rtol=0)


def test_reference_distinguishes_chunking_and_rho():
    # Guards the test above against being vacuous: the settings it compares give different steps.
    model = mlp()
    x, y = fixed_batch()
    full = reference_update(model, x, y, rho=0.5, m=None, normalize=True, l2=0.0)
    chunked = reference_update(model, x, y, rho=0.5, m=4, normalize=True, l2=0.0)
    erm = reference_update(model, x, y, rho=0.0, m=None, normalize=True, l2=0.0)
    assert any(not torch.allclose(full[k], chunked[k]) for k in full)
    assert any(not torch.allclose(full[k], erm[k]) for k in full)


def test_rho_zero_equals_erm_exactly():
    model = mlp(norm=True)
    x, y = fixed_batch()
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    sam_gradients(a, list(a.parameters()), F.cross_entropy, x, y, rho=0.0)
    erm_gradients(b, list(b.parameters()), F.cross_entropy, x, y)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa.grad, pb.grad)


def test_weights_restored_bit_for_bit():
    model = mlp(norm=True)
    x, y = fixed_batch()
    before = [p.detach().clone() for p in model.parameters()]
    sam_gradients(model, list(model.parameters()), F.cross_entropy, x, y, rho=0.7, m=4)
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)


def test_each_chunk_uses_its_own_batchnorm_statistics():
    # The descent gradient of chunk c depends on chunk c's BN statistics only: permuting examples
    # across chunks changes the step, permuting inside a chunk does not.
    model = mlp(norm=True)
    x, y = fixed_batch()

    def grads(order):
        net = copy.deepcopy(model)
        sam_gradients(net, list(net.parameters()), F.cross_entropy, x[order], y[order], rho=0.5, m=4)
        return torch.cat([p.grad.flatten() for p in net.parameters()])

    base = grads(torch.arange(16))
    inside = grads(torch.tensor([3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12]))
    across = grads(torch.tensor([0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15]))
    torch.testing.assert_close(base, inside, atol=1e-10, rtol=0)
    assert not torch.allclose(base, across, atol=1e-6)


@pytest.mark.parametrize("ascent_updates", [True, False])
def test_bn_running_stats_switch(ascent_updates):
    model = mlp(norm=True)
    x, y = fixed_batch()
    _, expected = reference_update(
        model, x, y, rho=0.5, m=8, normalize=True, l2=0.0, ascent_updates_bn=ascent_updates, return_buffers=True
    )
    net = copy.deepcopy(model)
    sam_gradients(
        net,
        list(net.parameters()),
        F.cross_entropy,
        x,
        y,
        SAM(rho=0.5, m=8, bn_ascent_updates_stats=ascent_updates, engine="loop"),
    )
    got = dict(net.named_buffers())
    assert int(got["1.num_batches_tracked"]) == (4 if ascent_updates else 2)  # 2 chunks x passes
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], atol=1e-10, rtol=0)


def test_frozen_bn_running_stats_restores_buffers():
    model = mlp(norm=True)
    x, _ = fixed_batch()
    before = {k: b.clone() for k, b in model.named_buffers()}
    with frozen_bn_running_stats(model):
        model(x)
    for k, b in model.named_buffers():
        assert torch.equal(b, before[k])
    model(x)
    assert not torch.equal(model[1].running_mean, before["1.running_mean"])


def test_m_must_divide_batch():
    with pytest.raises(ValueError, match="divisor"):
        chunk_slices(16, 5)
