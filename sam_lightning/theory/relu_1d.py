"""A one-hidden-layer ReLU network on a 1-D regression problem: ERM vs SAM (paper Sec. 4.3, Fig. 7).

    f(x) = sum_j a_j relu(w_j x + b_j),   100 hidden units, squared loss, full-batch GD

The 12 training points are those of the paper's public code for Fig. 7 (there credited to Maennel
et al., 2018; the problem of Blanc et al., 2020): x_i = (i - 5.5) / 4 + 0.07 for i = 0..11, and
y_i = 0.345 + (-2, 1.5, 0, 0, 2, 1, 0, -1, 0, 1, 2, -1)_i.

"Simpler interpolation" is measured by the total variation of the slope f' over the data range,
int |f''| = sum of |a_j w_j| over the kinks x = -b_j / w_j inside [x_min, x_max]: the sum of the
slope changes, exact for this network (no grid). Fewer or smaller kinks mean a smaller number.

    python theory.py experiment=relu_1d                  # ERM and SAM over 5 inits, PNG in the run directory
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from sam_lightning.config import ConfigError
from sam_lightning.sam import erm_gradients, sam_gradients
from sam_lightning.stats import mean_ci
from sam_lightning.theory.spec import TheoryMethod

X_TRAIN = tuple((i - 5.5) / 4 + 0.07 for i in range(12))
Y_TRAIN = tuple(0.345 + v for v in (-2, 1.5, 0, 0, 2, 1, 0, -1, 0, 1, 2, -1))
DTYPE = torch.float64


@dataclass(frozen=True)
class ReluSettings:
    """width: hidden units. inits: random initializations per method (seeds seed .. seed+inits-1).
    Init (after Blanc et al.): w_j = +-hidden_scale, b_j ~ hidden_scale * N(0, 1), so the kinks
    -b_j/w_j ~ N(0, 1) cover the data; a_j ~ output_scale * N(0, 1) / sqrt(width).
    lr, iterations: full-batch GD; training stops early once the loss is below stop_below."""

    width: int = 100
    inits: int = 5
    hidden_scale: float = 1.0
    output_scale: float = 1.0
    lr: float = 0.01
    iterations: int = 20000
    stop_below: float = 1e-6
    plot: bool = True

    def __post_init__(self) -> None:
        if self.width < 1 or self.inits < 1:
            raise ConfigError(f"relu.width and relu.inits must be >= 1, got {self.width}, {self.inits}")
        if self.lr <= 0 or self.iterations < 0:
            raise ConfigError(f"relu.lr must be > 0 and relu.iterations >= 0, got {self.lr}, {self.iterations}")
        if self.hidden_scale <= 0 or self.output_scale <= 0:
            raise ConfigError("relu.hidden_scale and relu.output_scale must be > 0")


class OneHiddenReLU(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(1, width, dtype=DTYPE)
        self.out = nn.Linear(width, 1, bias=False, dtype=DTYPE)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.relu(self.hidden(x)))


def make_network(settings: ReluSettings, seed: int) -> OneHiddenReLU:
    gen = torch.Generator().manual_seed(seed)
    net = OneHiddenReLU(settings.width)
    with torch.no_grad():
        signs = torch.randint(0, 2, (settings.width, 1), generator=gen).to(DTYPE) * 2 - 1
        net.hidden.weight.copy_(settings.hidden_scale * signs)
        net.hidden.bias.copy_(settings.hidden_scale * torch.randn(settings.width, generator=gen, dtype=DTYPE))
        net.out.weight.copy_(settings.output_scale * torch.randn(1, settings.width, generator=gen, dtype=DTYPE) / math.sqrt(settings.width))
    return net


def training_data() -> tuple[Tensor, Tensor]:
    return torch.tensor(X_TRAIN, dtype=DTYPE).unsqueeze(1), torch.tensor(Y_TRAIN, dtype=DTYPE).unsqueeze(1)


def half_squared_error(pred: Tensor, target: Tensor) -> Tensor:
    return (pred - target).pow(2).mean() / 2


def slope_total_variation(net: OneHiddenReLU, lo: float = min(X_TRAIN), hi: float = max(X_TRAIN)) -> float:
    """int_lo^hi |f''(x)| dx: the sum of |a_j w_j| over the kinks -b_j / w_j inside (lo, hi)."""
    with torch.no_grad():
        w, b, a = net.hidden.weight[:, 0], net.hidden.bias, net.out.weight[0]
        live = w != 0  # a unit with w_j = 0 is a constant, no kink
        kinks = -b[live] / w[live]
        inside = (kinks > lo) & (kinks < hi)
        return float((a[live] * w[live]).abs()[inside].sum())


def train_network(net: OneHiddenReLU, method: TheoryMethod, settings: ReluSettings) -> dict:
    """Full-batch steps with `method` through the shared step code; returns loss and iterations."""
    x, y = training_data()
    params = list(net.parameters())
    optimizer = torch.optim.SGD(params, lr=settings.lr)
    done = 0
    for done in range(1, settings.iterations + 1):
        optimizer.zero_grad(set_to_none=True)
        if method.name == "erm":
            out = erm_gradients(net, params, half_squared_error, x, y)
        else:
            out = sam_gradients(net, params, half_squared_error, x, y, rho=method.rho, m=method.m, normalize=method.normalize, project=False)
        loss = float(out.loss)
        if not math.isfinite(loss) or loss < settings.stop_below:
            optimizer.zero_grad(set_to_none=True)  # the loss was measured at w: stop before stepping
            done -= 1
            break
        optimizer.step()
    with torch.no_grad():
        final = float(half_squared_error(net(x), y))
    return {"final_train_loss": final if math.isfinite(final) else None, "iterations": done}


def run_relu_1d(method: TheoryMethod, settings: ReluSettings, seed: int, out_dir: str | Path) -> dict:
    """ERM and `method` from the same `settings.inits` initializations; a PNG of all learned functions."""
    if method.name == "erm":
        raise ConfigError("relu_1d compares ERM with a SAM method: choose method=sam (or sam_m1)")
    methods = {"ERM": TheoryMethod("erm", label="ERM"), "SAM": method}
    seeds = list(range(seed, seed + settings.inits))
    runs, nets = {}, {}
    for name, m in methods.items():
        runs[name], nets[name] = [], []
        for s in seeds:
            net = make_network(settings, s)
            result = train_network(net, m, settings)
            runs[name].append({"seed": s, **result, "slope_tv": slope_total_variation(net)})
            nets[name].append(net)
    summary = {}
    for name, rows in runs.items():
        tv_mean, tv_low, tv_high = mean_ci([r["slope_tv"] for r in rows])
        losses = [r["final_train_loss"] for r in rows]
        summary[name] = {
            "slope_tv_mean": tv_mean, "slope_tv_ci_low": tv_low, "slope_tv_ci_high": tv_high,
            "slope_tv_min": min(r["slope_tv"] for r in rows), "slope_tv_max": max(r["slope_tv"] for r in rows),
            "train_loss_max": max((v for v in losses if v is not None), default=float("nan")),
            "inits": len(rows), "runs": rows,
        }
    figure = None
    if settings.plot:
        from sam_lightning.plots import relu_functions

        figure = str(relu_functions(nets, training_data(), Path(out_dir) / "relu_1d.png", summary))
    sam = summary["SAM"]
    return {
        "final_train_loss": sam["train_loss_max"],
        "final_test_loss": None,  # no test distribution: the number to read is the slope variation
        "slope_tv_erm": summary["ERM"]["slope_tv_mean"], "slope_tv_sam": sam["slope_tv_mean"],
        "methods": summary, "figure": figure,
    }
