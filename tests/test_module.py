"""The Lightning system makes the same step as the hand-written reference, once per batch."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from helpers import LR, batches, fit, reference_update, system

from sam_lightning.settings.config import ConfigError, ModelSpec, OptimSpec
from sam_lightning.variants import ERM, SAM


@pytest.mark.parametrize("m", [None, 4])
@pytest.mark.parametrize("l2_mode", ["loss", "weight_decay"])
def test_lightning_step_matches_reference(m, l2_mode):
    l2 = 5e-3
    module = system(SAM(rho=0.2, m=m), l2=l2, l2_mode=l2_mode)
    start = copy.deepcopy(module.backbone)
    x, y, loader = batches()
    fit(module, loader)
    if l2_mode == "loss":
        expected = reference_update(start, x, y, rho=0.2, m=m, normalize=True, l2=l2)
    else:  # SGD's weight decay adds l2 * w0 to the (unregularized) SAM gradient
        plain = reference_update(start, x, y, rho=0.2, m=m, normalize=True, l2=0.0)
        w0 = dict(start.named_parameters())
        expected = {k: v - LR * l2 * w0[k] for k, v in plain.items()}
    for k, v in module.backbone.named_parameters():
        torch.testing.assert_close(v, expected[k], atol=1e-6, rtol=0)


def test_rho_zero_sam_equals_erm_in_the_system():
    x, y, loader = batches(n_batches=2)
    sam, erm = system(SAM(rho=0.0)), system(ERM())
    fit(sam, loader)
    fit(erm, loader)
    for a, b in zip(sam.backbone.parameters(), erm.backbone.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("method", [ERM(), SAM(m=2)])
def test_one_optimizer_step_per_batch(method):
    _, _, loader = batches(n_batches=3)
    module = system(method)
    calls = []
    module.configure_optimizers = _count_steps(module.configure_optimizers, calls)
    trainer = fit(module, loader)
    assert trainer.global_step == 3
    assert len(calls) == 3


def _count_steps(configure, calls):
    def wrapped():
        (opt,), scheds = configure()
        step = opt.step

        def counting_step(*args, **kwargs):
            calls.append(1)
            return step(*args, **kwargs)

        opt.step = counting_step
        return [opt], scheds

    return wrapped


def test_piecewise_schedule_decays_at_half_and_three_quarters():
    module = system(ERM(), schedule="piecewise", max_epochs=8)
    (opt,), (sched,) = module.configure_optimizers()
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)


@pytest.mark.parametrize(
    "cls,values,match",
    [
        (OptimSpec, {"l2_mode": "both"}, "optim.l2_mode"),
        (ModelSpec, {"widht": 8}, "unknown key"),
    ],
)
def test_bad_settings_fail_with_one_clear_line(cls, values, match):
    with pytest.raises(ConfigError, match=match) as err:
        cls.from_mapping(values)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "values,match",
    [({"rho": -1}, "method.rho"), ({"m": 0}, "method.m")],
)
def test_bad_variant_settings_fail_with_one_clear_line(values, match):
    with pytest.raises(ConfigError, match=match):
        SAM(**values)


def test_grad_clip_clips_the_final_descent_gradient():
    # One SAM step with clipping equals the unclipped step with its gradient rescaled to norm c.
    x, y, loader = batches()
    free, clipped = system(SAM(rho=0.2, m=4), schedule="constant"), system(SAM(rho=0.2, m=4), grad_clip=1e-3)
    start = [p.detach().clone() for p in free.backbone.parameters()]
    fit(free, loader)
    fit(clipped, loader)
    step = [s - p.detach() for s, p in zip(start, free.backbone.parameters())]  # lr * d
    norm = torch.sqrt(sum((d**2).sum() for d in step)) / LR
    assert norm > 1e-3  # the clip is active
    for s, d, p in zip(start, step, clipped.backbone.parameters()):
        torch.testing.assert_close(p.detach(), s - d * (1e-3 / norm), atol=1e-10, rtol=0)


def test_erm_is_a_method_whose_hparams_are_those_of_old_checkpoints():
    from sam_lightning.entry import instantiate_method
    from sam_lightning.training.module import method_hparams

    saved = method_hparams(ERM())
    assert saved == {"_target_": "sam_lightning.variants.erm.ERM", "name": "erm", "rho": 0.0}  # as checkpoints hold
    assert instantiate_method({k: v for k, v in saved.items() if k != "name"}) == ERM()
    assert not ERM().ascends and not ERM().perturbs_at(0, None) and SAM().perturbs_at(0, None)


def test_the_method_memory_is_saved_and_old_checkpoints_nsam_batch_is_read():
    from sam_lightning.variants import NSAM

    module = system(NSAM(rho=0.1))
    x, y, _ = batches()
    assert module._ascent_batch(x, y) is None  # remembers (x, y)
    saved = {}
    module.on_save_checkpoint(saved)
    for checkpoint in (saved, {"nsam_previous_batch": (x, y)}):  # this version's, and an older run's
        resumed = system(NSAM(rho=0.1))
        resumed.on_load_checkpoint(checkpoint)
        xa, ya = resumed._ascent_batch(x + 1, y)
        assert torch.equal(xa, x) and torch.equal(ya, y)
    fresh = system(NSAM(rho=0.1))
    fresh.on_load_checkpoint({"nsam_previous_batch": None})  # older runs of other methods saved None
    assert fresh.method_memory == {}


@dataclass(frozen=True, kw_only=True)
class EveryOtherEpochSAM(SAM):
    """A method outside the package that switches on its own schedule and keeps a memory: the
    system and the switch callback must ask it, not know it."""

    name = "every_other_epoch_sam"

    def switch_epoch(self, max_epochs: int) -> int:
        return 1

    def perturbs_at(self, epoch: int, switch_epoch: int | None) -> bool:
        return epoch % (switch_epoch + 1) == 0

    def ascent_batch_for(self, x, y, memory, random_batch):
        memory["calls"] = memory.get("calls", 0) + 1
        return None


def test_the_system_and_the_switch_ask_the_method_what_it_does():
    from pytorch_lightning.callbacks import Callback

    from sam_lightning.training.callbacks.switch import MethodSwitch

    class Record(Callback):
        seen: list = []

        def on_train_epoch_end(self, trainer, pl_module):
            self.seen.append(pl_module.perturbing)

    module, record = system(EveryOtherEpochSAM(rho=0.1), max_epochs=3), Record()
    _, _, loader = batches(n_batches=2)
    fit(module, loader, max_epochs=3, callbacks=[MethodSwitch(), record])
    assert record.seen == [True, False, True]
    assert module.method_memory == {"calls": 4}  # asked once per perturbing step: 2 epochs x 2 batches
    with pytest.raises(ConfigError, match="needs the MethodSwitch callback"):
        fit(system(EveryOtherEpochSAM(rho=0.1)), loader)


def test_the_sam_gap_is_the_second_passes_loss_minus_the_first_over_the_epoch():
    # train/sam_gap = L(w + e) - L(w), averaged over the epoch's steps, from the step's own outputs
    # (no extra pass); ERM, which never perturbs, does not log it.
    from sam_lightning.core.step import StepOutput

    _, _, loader = batches(n_batches=3)
    module = system(SAM(rho=0.05))
    seen: list[StepOutput] = []
    gradients = module._gradients
    module._gradients = lambda *a, **k: seen.append(gradients(*a, **k)) or seen[-1]
    trainer = fit(module, loader)
    gaps = [float(o.perturbed_loss - o.loss) for o in seen]
    assert len(gaps) == 3 and all(g > 0 for g in gaps)  # a worst-case step raises the loss
    assert float(trainer.callback_metrics["train/sam_gap"]) == pytest.approx(sum(gaps) / 3, rel=1e-6)
    erm = fit(system(ERM()), loader)
    assert "train/sam_gap" not in erm.callback_metrics and "train/loss" in erm.callback_metrics
