"""A one-hidden-layer ReLU network on a 1-D regression problem: ERM vs SAM (paper Sec. 4.3, Fig. 7).

    f(x) = sum_j a_j relu(w_j x + b_j),   100 hidden units, squared loss, full-batch GD

The 12 training points are those of the paper's public code for Fig. 7 (there credited to Maennel
et al., 2018; the problem of Blanc et al., 2020): x_i = (i - 5.5) / 4 + 0.07 for i = 0..11, and
y_i = 0.345 + (-2, 1.5, 0, 0, 2, 1, 0, -1, 0, 1, 2, -1)_i.

The run is the paper's code's (one_layer_relu_nets/1d_nn.ipynb): the loss is half the *sum* of the
squared residuals, the step 5e-5 for at most 1e6 steps, ERM stops once the loss is below 1e-5, SAM's
step decays linearly to 0 over the 1e6 steps (normalized rho = 0.3), and the seeds 0-4 give the
code's five initializations (`make_network`). That is ~25 units of gradient-flow time (the sum of the
step sizes) for SAM and up to 50 for ERM. The methods are the training runs' (`ERM`, and `SAM` with
normalize=true, project=false). `step_code: vectorized` trains all runs at once (`train_vectorized`,
tested to give the iterates of the shared step code): ~5 min on one core.

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

from sam_lightning.core.step import step_gradients
from sam_lightning.reporting.stats import mean_ci
from sam_lightning.settings.config import ConfigError
from sam_lightning.theory.progress import progress
from sam_lightning.theory.spec import check_vectorizable
from sam_lightning.variants import ERM, Method

X_TRAIN = tuple((i - 5.5) / 4 + 0.07 for i in range(12))
Y_TRAIN = tuple(0.345 + v for v in (-2, 1.5, 0, 0, 2, 1, 0, -1, 0, 1, 2, -1))
DTYPE = torch.float64
SCHEDULES = ("constant", "linear")
STEP_CODES = ("shared", "vectorized")


@dataclass(frozen=True)
class ReluSettings:
    """width: hidden units. inits: random initializations per method (seeds seed .. seed+inits-1).
    Init (Blanc et al., as the paper's code): w_j = +-hidden_scale, b_j ~ hidden_scale * N(0, 1), so
    the kinks -b_j/w_j ~ N(0, 1) cover the data; a_j ~ output_scale * N(0, 1).
    lr, iterations: full-batch steps on half the summed squared residuals; a run stops early once
    its loss is below stop_below. sam_lr_schedule: the SAM run's step, constant or linear (lr (1 -
    t / iterations) at step t, the paper's code; its ERM keeps lr). step_code: which code computes
    each step: shared (the training runs' `step_gradients`, one run after another) or vectorized
    (closed-form gradients of all runs at once, same iterates). log_every: loss rows."""

    width: int = 100
    inits: int = 5
    hidden_scale: float = 2.5
    output_scale: float = 4.0
    lr: float = 5e-5
    iterations: int = 1_000_000
    stop_below: float = 1e-5
    sam_lr_schedule: str = "linear"
    step_code: str = "vectorized"
    log_every: int = 100_000
    plot: bool = True

    def __post_init__(self) -> None:
        if self.width < 1 or self.inits < 1:
            raise ConfigError(f"relu.width and relu.inits must be >= 1, got {self.width}, {self.inits}")
        if self.lr <= 0 or self.iterations < 1:
            raise ConfigError(f"relu.lr must be > 0 and relu.iterations >= 1, got {self.lr}, {self.iterations}")
        if self.hidden_scale <= 0 or self.output_scale <= 0:
            raise ConfigError("relu.hidden_scale and relu.output_scale must be > 0")
        if self.sam_lr_schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown relu.sam_lr_schedule {self.sam_lr_schedule!r}; choose one of {', '.join(SCHEDULES)}"
            )
        if self.step_code not in STEP_CODES:
            raise ConfigError(f"unknown relu.step_code {self.step_code!r}; choose one of {', '.join(STEP_CODES)}")
        if self.log_every < 1:
            raise ConfigError(f"relu.log_every must be >= 1, got {self.log_every}")


class OneHiddenReLU(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(1, width, dtype=DTYPE)
        self.out = nn.Linear(width, 1, bias=False, dtype=DTYPE)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.relu(self.hidden(x)))


def make_network(settings: ReluSettings, seed: int) -> OneHiddenReLU:
    """The paper code's network for `seed`: its Net draws, in float32 from torch's generator seeded
    with `seed`, nn.Linear's own initializations (overwritten, but they advance the stream), the signs
    of w, then b, then the output layer's own initialization and a. Replayed here draw for draw."""
    gen = torch.Generator().manual_seed(seed)
    width = settings.width
    net = OneHiddenReLU(width)
    torch.empty(width, 1).uniform_(generator=gen)  # hidden.weight's default init
    torch.empty(width).uniform_(generator=gen)  # hidden.bias's
    signs = 2 * torch.round(torch.rand(width, 1, generator=gen)) - 1
    bias = torch.randn(width, generator=gen)
    torch.empty(1, width).uniform_(generator=gen)  # out.weight's default init
    out = torch.randn(1, width, generator=gen)
    with torch.no_grad():
        net.hidden.weight.copy_(settings.hidden_scale * signs)
        net.hidden.bias.copy_(settings.hidden_scale * bias)
        net.out.weight.copy_(settings.output_scale * out)
    return net


def training_data() -> tuple[Tensor, Tensor]:
    return torch.tensor(X_TRAIN, dtype=DTYPE).unsqueeze(1), torch.tensor(Y_TRAIN, dtype=DTYPE).unsqueeze(1)


def half_sum_squared_error(pred: Tensor, target: Tensor) -> Tensor:
    """sum_i (f(x_i) - y_i)^2 / 2: the paper code's 0.5 * MSELoss(reduction='sum'), 12x the mean's half."""
    return (pred - target).pow(2).sum() / 2


def decays(settings: ReluSettings, method: Method) -> bool:
    """Whether the run's step size decays linearly to 0 (the SAM run, when asked: the paper's code)."""
    return method.ascends and settings.sam_lr_schedule == "linear"


def step_size(settings: ReluSettings, method: Method, step: int) -> float:
    """The step size of step `step` (1-based)."""
    return settings.lr * (1 - step / settings.iterations) if decays(settings, method) else settings.lr


def slope_total_variation(net: OneHiddenReLU, lo: float = min(X_TRAIN), hi: float = max(X_TRAIN)) -> float:
    """int_lo^hi |f''(x)| dx: the sum of |a_j w_j| over the kinks -b_j / w_j inside (lo, hi)."""
    with torch.no_grad():
        w, b, a = net.hidden.weight[:, 0], net.hidden.bias, net.out.weight[0]
        live = w != 0  # a unit with w_j = 0 is a constant, no kink
        kinks = -b[live] / w[live]
        inside = (kinks > lo) & (kinks < hi)
        return float((a[live] * w[live]).abs()[inside].sum())


def train_network(net: OneHiddenReLU, method: Method, settings: ReluSettings) -> dict:
    """Full-batch steps with `method` through the shared step code; returns loss, iterations and the
    gradient-flow time (the sum of the step sizes taken)."""
    x, y = training_data()
    params = list(net.parameters())
    optimizer = torch.optim.SGD(params, lr=settings.lr)
    done, flow_time = 0, 0.0
    for done in progress(range(1, settings.iterations + 1), f"relu_1d {method.name}"):
        optimizer.zero_grad(set_to_none=True)
        loss = float(step_gradients(net, params, half_sum_squared_error, x, y, method, rho=method.rho).loss)
        if not math.isfinite(loss) or loss < settings.stop_below:
            optimizer.zero_grad(set_to_none=True)  # the loss was measured at w: stop before stepping
            done -= 1
            break
        lr = step_size(settings, method, done)
        optimizer.param_groups[0]["lr"] = lr
        optimizer.step()
        flow_time += lr
    return {**fit(net), "iterations": done, "time": flow_time}


def fit(net: OneHiddenReLU) -> dict:
    """The final training loss and the largest residual |f(x_i) - y_i|."""
    x, y = training_data()
    with torch.no_grad():
        residual = net(x) - y
        final = float(half_sum_squared_error(net(x), y))
    return {"final_train_loss": final if math.isfinite(final) else None, "max_residual": float(residual.abs().max())}


# -- all runs at once -------------------------------------------------------------------------------


def _stack(nets: list[OneHiddenReLU]) -> Tensor:
    """(runs, 3, width, 1): w, b and a of every network."""
    return (
        torch.stack([torch.stack([n.hidden.weight[:, 0], n.hidden.bias, n.out.weight[0]]) for n in nets])
        .detach()
        .unsqueeze(-1)
    )


def _unstack(params: Tensor, nets: list[OneHiddenReLU]) -> None:
    with torch.no_grad():
        for p, net in zip(params, nets):
            net.hidden.weight.copy_(p[0])
            net.hidden.bias.copy_(p[1, :, 0])
            net.out.weight.copy_(p[2, :, 0].unsqueeze(0))


def _gradients(params: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of half the summed squared residuals for all runs, (runs, 3, width, 1), and the losses.

    z_jn = w_j x_n + b_j, r_n = sum_j a_j relu(z_jn) - y_n; with d_jn = a_j 1[z_jn > 0] r_n:
    dL/dw_j = sum_n d_jn x_n, dL/db_j = sum_n d_jn, dL/da_j = sum_n relu(z_jn) r_n."""
    w, b, a = params[:, 0], params[:, 1], params[:, 2]
    z = torch.addcmul(b, w, x)  # (runs, width, points)
    h = torch.relu(z)
    r = (torch.bmm(a.transpose(1, 2), h).squeeze(1) - y).unsqueeze(1)  # (runs, 1, points)
    d = (z > 0) * (a * r)
    grads = torch.stack([(d * x).sum(2), d.sum(2), (h * r).sum(2)], 1).unsqueeze(-1)
    return grads, 0.5 * r.square().sum((1, 2))


def train_vectorized(
    nets: list[OneHiddenReLU], methods: list[Method], settings: ReluSettings
) -> tuple[list[dict], list[dict]]:
    """Train every (network, method) pair at once with full-batch steps of `methods[k]` (ERM, or SAM
    with m=null); the same iterates as `train_network`, one run after another. Each run stops on its
    own (its step size becomes 0). Returns one result per run and the loss rows every log_every steps."""
    for method in methods:
        check_vectorizable(method, "relu.step_code")
    if any(m.ascends and m.m is not None for m in methods):
        raise ConfigError(
            "relu.step_code=vectorized takes full-batch SAM (method.m=null): use relu.step_code=shared for m-SAM"
        )
    x, y = (t[:, 0] for t in training_data())
    params = _stack(nets)
    rho = torch.tensor([m.rho if m.ascends else 0.0 for m in methods], dtype=DTYPE).view(-1, 1, 1, 1)
    normalized = torch.tensor([m.ascends and m.normalize for m in methods]).view(-1, 1, 1, 1)
    decaying = torch.tensor([decays(settings, m) for m in methods]).view(-1, 1, 1, 1)
    base_lr = torch.tensor(settings.lr, dtype=DTYPE)  # a tensor: torch.where of two Python floats is float32
    running = torch.ones(len(nets), dtype=torch.bool)
    done, flow_time, history = torch.zeros(len(nets), dtype=torch.long), torch.zeros(len(nets), dtype=DTYPE), []
    for step in progress(range(1, settings.iterations + 1), f"relu_1d, {len(nets)} runs at once"):
        grads, loss = _gradients(params, x, y)
        running &= torch.isfinite(loss) & (loss >= settings.stop_below)  # measured at w: stop before stepping
        if step % settings.log_every == 0:
            history.append({"step": step, "losses": loss.tolist()})  # one per run, in the order of `nets`
            if not running.any():
                break
        norm = grads.square().sum((1, 2, 3), keepdim=True).sqrt()
        scale = torch.where(normalized, rho / norm, rho)
        ascent_grads, _ = _gradients(torch.addcmul(params, scale, grads), x, y)
        lr = torch.where(decaying, base_lr * (1 - step / settings.iterations), base_lr) * running.view(-1, 1, 1, 1)
        params.addcmul_(lr, ascent_grads, value=-1)
        done += running
        flow_time += lr.view(-1)
    _unstack(params, nets)
    return [{**fit(n), "iterations": int(k), "time": float(t)} for n, k, t in zip(nets, done, flow_time)], history


def run_relu_1d(method: Method, settings: ReluSettings, seed: int, out_dir: str | Path) -> dict:
    """ERM and `method` from the same `settings.inits` initializations; a PNG of all learned functions."""
    if not method.ascends:
        raise ConfigError("relu_1d compares ERM with a SAM method: choose method=sam (or sam_m1)")
    methods = {"ERM": ERM(), "SAM": method}
    seeds = list(range(seed, seed + settings.inits))
    nets = {name: [make_network(settings, s) for s in seeds] for name in methods}
    pairs = [(name, m, net, s) for name, m in methods.items() for net, s in zip(nets[name], seeds)]
    if settings.step_code == "vectorized":
        results, history = train_vectorized([p[2] for p in pairs], [p[1] for p in pairs], settings)
    else:
        results, history = [train_network(net, m, settings) for _, m, net, _ in pairs], []
    runs = {name: [] for name in methods}
    for (name, _, net, s), result in zip(pairs, results):
        runs[name].append({"seed": s, **result, "slope_tv": slope_total_variation(net)})
    summary = {name: method_summary(rows) for name, rows in runs.items()}
    figure = None
    if settings.plot:
        from sam_lightning.reporting.plots import relu_functions

        figure = str(relu_functions(nets, training_data(), Path(out_dir) / "relu_1d.png", summary))
    sam = summary["SAM"]
    return {
        "final_train_loss": sam["train_loss_max"],
        "final_test_loss": None,  # no test distribution: the number to read is the slope variation
        "slope_tv_erm": summary["ERM"]["slope_tv_mean"],
        "slope_tv_sam": sam["slope_tv_mean"],
        "methods": summary,
        "figure": figure,
        "history": history,
    }


def method_summary(rows: list[dict]) -> dict:
    tv_mean, tv_low, tv_high = mean_ci([r["slope_tv"] for r in rows])
    losses = [r["final_train_loss"] for r in rows]
    return {
        "slope_tv_mean": tv_mean,
        "slope_tv_ci_low": tv_low,
        "slope_tv_ci_high": tv_high,
        "slope_tv_min": min(r["slope_tv"] for r in rows),
        "slope_tv_max": max(r["slope_tv"] for r in rows),
        "train_loss_max": max((v for v in losses if v is not None), default=float("nan")),
        "max_residual": max(r["max_residual"] for r in rows),
        "time_max": max(r["time"] for r in rows),
        "inits": len(rows),
        "runs": rows,
    }
