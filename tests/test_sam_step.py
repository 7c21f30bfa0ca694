"""The SAM update against a hand-written reference (tests/helpers.py: `reference_update`, which does
not use sam_lightning.core) on tiny models with fixed data."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import LR, fixed_batch, mlp, reference_update

from sam_lightning.core.batchnorm import frozen_bn_running_stats
from sam_lightning.core.step import erm_gradients, sam_gradients
from sam_lightning.variants import SAM


def library_update(model, x, y, *, rho, m, normalize, l2):
    net = copy.deepcopy(model)
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=LR, momentum=0.9)
    reg = (lambda ws: 0.5 * l2 * sum((p**2).sum() for p in ws)) if l2 else None
    sam_gradients(net, params, F.cross_entropy, x, y, SAM(rho=rho, m=m, normalize=normalize), rho=rho, regularizer=reg)
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
    sam_gradients(a, list(a.parameters()), F.cross_entropy, x, y, SAM(rho=0.0), rho=0.0)
    erm_gradients(b, list(b.parameters()), F.cross_entropy, x, y)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa.grad, pb.grad)


def test_weights_restored_bit_for_bit():
    model = mlp(norm=True)
    x, y = fixed_batch()
    before = [p.detach().clone() for p in model.parameters()]
    sam_gradients(model, list(model.parameters()), F.cross_entropy, x, y, SAM(rho=0.7, m=4), rho=0.7)
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)


def test_each_chunk_uses_its_own_batchnorm_statistics():
    # The descent gradient of chunk c depends on chunk c's BN statistics only: permuting examples
    # across chunks changes the step, permuting inside a chunk does not.
    model = mlp(norm=True)
    x, y = fixed_batch()

    def grads(order):
        net = copy.deepcopy(model)
        sam_gradients(net, list(net.parameters()), F.cross_entropy, x[order], y[order], SAM(rho=0.5, m=4), rho=0.5)
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
        rho=0.5,
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
