"""Training-step cost, as ratios measured in one run on one machine. Hydra config: conf/bench/.

    make bench                                        # .venv/bin/python bench/step_time.py
    make bench-gpu                                    # .venv/bin/python bench/step_time.py preset=gpu
    .venv/bin/python bench/step_time.py preset=m_grid # m = 32, 8, 4 at batch 128, float32
    .venv/bin/python bench/step_time.py m=[4] norms=[group] steps=20

Measures a pre-activation ResNet-18 (by default the laptop presets' size: width 16, batch 64 and 128):
  * the gradient step alone, through sam_lightning.core.step: ERM, SAM (m = batch), and m-SAM for each m
    with the chunk loop and the vectorized engine; BatchNorm and GroupNorm; in float32, bf16
    autocast, channels_last and both, each as a ratio to float32 of the same method in the same run;
  * the machine's dense matmul rate (a large torch.mm in float32 and in bf16), and the fraction of
    it each step achieves: the model's FLOPs (forward + backward, counted once with
    torch.utils.flop_counter) times the method's passes (ERM 1, SAM and m-SAM 2) over the step time;
  * the whole training loop: Lightning (SAMClassifier + Trainer) vs an equivalent plain PyTorch loop;
  * the training data: device-resident batches vs the DataLoader path (batches per second).
Each time is the median over `steps` steps after warm-up; measurements are interleaved over
`rounds` rounds so that load drift hits them alike. Absolute times on a shared machine mean little;
the ratios to SAM (m = batch) in the same run are the result. Writes the table to `out` (JSON).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sam_lightning.core.step import erm_gradients, sam_gradients  # noqa: E402
from sam_lightning.data import DataSpec, ImageDataModule  # noqa: E402
from sam_lightning.data.device_loader import DeviceBatches  # noqa: E402
from sam_lightning.entry import run_command  # noqa: E402
from sam_lightning.models import build_model  # noqa: E402
from sam_lightning.settings.config import NORMS, ConfigError, ModelSpec, OptimSpec  # noqa: E402
from sam_lightning.settings.speed import NO_BF16_CPU, cpu_bf16_feature  # noqa: E402
from sam_lightning.settings.strict import check_booleans  # noqa: E402
from sam_lightning.training.module import SAMClassifier, l2_penalty  # noqa: E402
from sam_lightning.training.quiet import quiet_lightning, silence_deprecations  # noqa: E402
from sam_lightning.variants import ERM, SAM  # noqa: E402

L2 = 5e-4
WARMUP = 2  # steps before a row's first timing; 1 in later rounds (its kernels and buffers exist by then)
ENGINES = ("loop", "vmap")
PRECISIONS = ("fp32", "bf16")
SETTING = ("batch", "norm", "precision", "channels_last", "compile")  # what a row's ratios hold fixed
MATMUL_N = 2048  # the matmul that measures the machine's rate: (N x N) @ (N x N), 2 N^3 FLOPs
silence_deprecations()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_data(batch_size: int, n_batches: int) -> ImageDataModule:
    data = DataSpec(
        name="synthetic", n_train=batch_size * n_batches, n_test=batch_size, num_classes=10, batch_size=batch_size
    )
    dm = ImageDataModule(data, on_device=False)
    dm.setup()
    return dm


def gradient_step(method, model, params):
    def run(x, y):
        reg = lambda ws: l2_penalty(ws, L2)  # noqa: E731
        if isinstance(method, ERM):
            return erm_gradients(model, params, F.cross_entropy, x, y, regularizer=reg)
        return sam_gradients(model, params, F.cross_entropy, x, y, method, rho=method.rho, regularizer=reg)

    return run


def median_step_time(step, batch, device, steps: int, precision: str, warmup: int = WARMUP) -> float:
    x, y = batch
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    times = []
    for i in range(steps + warmup):
        sync(device)
        t0 = time.perf_counter()
        with autocast:
            step(x, y)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_rates(device: torch.device, precisions, n: int = MATMUL_N, seconds: float = 0.5) -> dict:
    """The machine's dense matmul rate in FLOP/s per precision: the best of repeated (n x n) @ (n x n)
    products (at least `seconds` of them after one warm-up), with the threads the steps use."""
    rates = {}
    for precision in precisions:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        torch.mm(a, b)
        best, spent = float("inf"), 0.0
        while spent < seconds or best == float("inf"):
            sync(device)
            t0 = time.perf_counter()
            torch.mm(a, b)
            sync(device)
            took = time.perf_counter() - t0
            best, spent = min(best, took), spent + took
        rates[precision] = 2 * n**3 / best
    return rates


def pass_flops(width: int, norm: str, batch_size: int) -> int:
    """FLOPs of one forward + backward pass of the model over a batch (convolutions and the linear
    layer, as torch.utils.flop_counter counts them: the normalizations' few FLOPs are left out)."""
    model = build_model(num_classes=10, **asdict(ModelSpec(width=width, norm=norm)))
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops()


def step_rows(cfg: DictConfig) -> list[dict]:
    """One row per (setting, method): the settings are batch size x norm x precision x channels_last x compile."""
    rows = []
    for batch_size, norm, precision, cl, compiled in itertools.product(
        cfg.batch_sizes, cfg.norms, cfg.precisions, cfg.channels_last, cfg.compile
    ):
        methods = [("ERM", ERM(), "-"), ("SAM (m = batch)", SAM(m=None), "-")]
        methods += [
            (f"m-SAM (m = {m})", SAM(m=m, engine=engine), engine)
            for m in cfg.m
            if m < batch_size
            for engine in cfg.engines
        ]
        for label, method, engine in methods:
            rows.append(
                {
                    "batch": batch_size,
                    "norm": norm,
                    "precision": precision,
                    "channels_last": cl,
                    "compile": compiled,
                    "method": label,
                    "m": getattr(method, "m", None) or (batch_size if label.startswith("SAM") else None),
                    "engine": engine,
                    "passes": 1 if isinstance(method, ERM) else 2,  # forward + backward passes over the batch
                    "_method": method,
                    "times": [],
                }
            )
    return rows


def run_step_rows(cfg: DictConfig, device: torch.device, rates: dict | None = None) -> list[dict]:
    """The step table; `rates`: the matmul rate per precision (FLOP/s), for each row's share of it."""
    rows = step_rows(cfg)
    setups = {}
    for _ in range(cfg.rounds):
        for row in rows:
            key = tuple(row[k] for k in SETTING)
            if key not in setups:
                torch.manual_seed(0)
                spec = ModelSpec(width=cfg.width, norm=row["norm"])  # GroupNorm's groups: the paper's default
                model = build_model(num_classes=10, **asdict(spec)).to(device)
                fmt = torch.channels_last if row["channels_last"] else torch.contiguous_format
                model = model.to(memory_format=fmt)
                x = torch.randn(row["batch"], 3, 32, 32, device=device).contiguous(memory_format=fmt)
                y = torch.randint(0, 10, (row["batch"],), device=device)
                params = list(model.parameters())
                net = torch.compile(model) if row["compile"] else model
                setups[key] = (net, params, (x, y))
            net, params, batch = setups[key]
            if row["compile"] and row["engine"] == "vmap":  # it would run the chunk loop (sam_lightning.core.step)
                row["error"] = "not measured: torch.vmap cannot run a compiled forward"
                continue
            warmup = WARMUP if not row["times"] else 1
            try:
                row["times"].append(
                    median_step_time(
                        gradient_step(row["_method"], net, params), batch, device, cfg.steps, row["precision"], warmup
                    )
                )
            except Exception as err:  # noqa: BLE001 - a combination that does not run is a result too
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
        print(f"  step round done ({len(rows)} measurements)", flush=True)
    for row in rows:
        row["ms"] = 1000 * statistics.median(row["times"]) if row["times"] and "error" not in row else None
        # how far apart the rounds' medians are: (max - min) / median; None for one round
        row["spread"] = (
            (max(row["times"]) - min(row["times"])) / statistics.median(row["times"])
            if len(row["times"]) > 1 and "error" not in row
            else None
        )
    flops = {(b, n): pass_flops(cfg.width, n, b) for b in cfg.batch_sizes for n in cfg.norms}
    for row in rows:  # ratio to SAM (m = batch) in the same setting
        base = next(r for r in rows if r["method"] == "SAM (m = batch)" and all(r[k] == row[k] for k in SETTING))
        row["vs_sam"] = row["ms"] / base["ms"] if row["ms"] and base["ms"] else None
        # ratio to the same method and engine in float32, default layout (None where that was not measured)
        fp32 = next(
            (
                r
                for r in rows
                if (r["precision"], r["channels_last"]) == ("fp32", False)
                and all(r[k] == row[k] for k in ("batch", "norm", "compile", "method", "engine"))
            ),
            None,
        )
        row["vs_fp32"] = row["ms"] / fp32["ms"] if row["ms"] and fp32 and fp32["ms"] else None
        row["epoch_s"] = row["ms"] / 1000 * (cfg.epoch_images // row["batch"]) if row["ms"] else None
        row["flops"] = flops[(row["batch"], row["norm"])] * row["passes"]
        rate = (rates or {}).get(row["precision"])
        row["of_matmul_rate"] = row["flops"] / (row["ms"] / 1000) / rate if row["ms"] and rate else None
        del row["_method"], row["times"]
    return rows


# What a quiet machine always gives: SAM's two passes cost more than ERM's one, and m-SAM does at least
# SAM's arithmetic in smaller pieces. Past these margins the clock measured the other processes.
ERM_OVER_SAM_MAX = 0.9
MSAM_OVER_SAM_MIN = 0.9
ROUND_SPREAD_MAX = 0.2


def unreliable_because(rows: list[dict], load: float | None = None, cpus: int | None = None) -> list[str]:
    """Why the step table's ratios cannot be trusted (empty: no sign of it). `load`: the 1-minute load
    average; above `cpus` (the machine's cores) the timed threads had to share them."""
    reasons = []
    if load is not None and cpus and load > cpus:
        reasons.append(f"load average {load:.1f} on {cpus} CPUs")
    for row in rows:
        where = f"batch {row['batch']}, {row['norm']}, {row['precision']}"
        what = row["method"] + ("" if row["engine"] == "-" else f" {row['engine']}")
        ratio = row.get("vs_sam")
        if ratio is not None and row["method"] == "ERM" and ratio > ERM_OVER_SAM_MAX:
            reasons.append(f"SAM (m = batch) no costlier than ERM ({where}: ERM at {ratio:.2f}x SAM)")
        if ratio is not None and row["method"].startswith("m-SAM") and ratio < MSAM_OVER_SAM_MIN:
            reasons.append(f"{what} faster than SAM (m = batch) ({where}: {ratio:.2f}x)")
        if row.get("spread") is not None and row["spread"] > ROUND_SPREAD_MAX:
            reasons.append(f"rounds {100 * row['spread']:.0f}% apart ({what}, {where})")
    return reasons


def load_warning(rows: list[dict], load: float | None = None, cpus: int | None = None) -> str | None:
    """One line after the table when its ratios look like a loaded machine's, with the reasons."""
    reasons = unreliable_because(rows, load, cpus)
    if not reasons:
        return None
    shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    return f"warning: the machine looks loaded and these ratios are unreliable ({shown}); rerun on a quiet machine"


class StepClock(pl.Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync(pl_module.device)
        self.stamps.append(time.perf_counter())


def loop_times(cfg: DictConfig, device: torch.device) -> dict:
    """Median seconds per step of a Lightning loop and of a plain loop around the same SAM step."""
    batch_size = cfg.batch_sizes[0]
    dm = make_data(batch_size, cfg.steps + WARMUP + 1)
    out = {"plain": [], "lightning": []}
    for _ in range(cfg.rounds):
        torch.manual_seed(0)
        model = build_model(num_classes=10, **asdict(ModelSpec(width=cfg.width))).to(device)
        params = list(model.parameters())
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
        step, stamps = gradient_step(SAM(m=None), model, params), []
        for x, y, _ in dm.train_dataloader():
            x, y = dm.transform((x.to(device, non_blocking=True), y.to(device, non_blocking=True)), train=True)
            opt.zero_grad(set_to_none=True)
            step(x, y)
            opt.step()
            sync(device)
            stamps.append(time.perf_counter())
        out["plain"].append(statistics.median(b - a for a, b in zip(stamps[WARMUP:], stamps[WARMUP + 1 :])))
        torch.manual_seed(0)
        module = SAMClassifier(
            ModelSpec(width=cfg.width), SAM(m=None), OptimSpec(l2=L2, schedule="constant"), num_classes=10, max_epochs=1
        )
        clock = StepClock()
        trainer = pl.Trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=1,
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            callbacks=[clock],
            log_every_n_steps=50,
        )
        trainer.fit(module, datamodule=dm)
        out["lightning"].append(
            statistics.median(b - a for a, b in zip(clock.stamps[WARMUP:], clock.stamps[WARMUP + 1 :]))
        )
    return {k: 1000 * statistics.median(v) for k, v in out.items()}


def loader_rates(cfg: DictConfig, device: torch.device) -> dict:
    """Training batches per second (uint8 batch on the device, augmented and normalized), both paths."""
    batch_size = cfg.batch_sizes[0]
    dm = make_data(batch_size, 40)
    s = dm.splits
    paths = {
        "DataLoader": dm.train_dataloader(),
        "device-resident": DeviceBatches((s.train_x, s.train_y, s.train_true_y), batch_size, device),
    }
    rates = {k: [] for k in paths}
    for _ in range(cfg.rounds):
        for name, loader in paths.items():
            sync(device)
            t0 = time.perf_counter()
            n = 0
            for x, y, _ in loader:
                dm.transform((x.to(device, non_blocking=True), y.to(device, non_blocking=True)), train=True)
                n += 1
            sync(device)
            rates[name].append(n / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in rates.items()}


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def setting_name(precision: str, channels_last: bool) -> str:
    return precision + (", channels_last" if channels_last else "")


def precision_table(rows: list[dict]) -> list[str]:
    """One line per method (and batch, norm, engine, compile), one column per precision and layout:
    ms/step, its ratio to float32 in the default layout of the same line, and its share of the
    matmul rate of its precision. Empty when the rows hold only one precision and layout."""
    settings = list(dict.fromkeys((r["precision"], r["channels_last"]) for r in rows))
    if len(settings) < 2:
        return []
    keys = ("batch", "norm", "compile", "method", "engine")
    lines = [
        "| batch | norm | compile | method | engine | " + " | ".join(setting_name(*s) for s in settings) + " |",
        "|---" * (len(keys) + len(settings)) + "|",
    ]
    for line in dict.fromkeys(tuple(r[k] for k in keys) for r in rows):
        cells = []
        for precision, cl in settings:
            row = next(
                (
                    r
                    for r in rows
                    if (r["precision"], r["channels_last"]) == (precision, cl) and tuple(r[k] for k in keys) == line
                ),
                None,
            )
            if row is None or row["ms"] is None:  # failed to run (the long table says why)
                cells.append("-")
                continue
            ratio = "" if row["vs_fp32"] is None or (precision, cl) == ("fp32", False) else f" ({row['vs_fp32']:.2f})"
            share = "" if row["of_matmul_rate"] is None else f", {100 * row['of_matmul_rate']:.2g}%"
            cells.append(f"{fmt(row['ms'], '.0f')}{ratio}{share}")
        lines.append("| " + " | ".join(str(v) for v in line) + " | " + " | ".join(cells) + " |")
    return lines


def _choices(cfg: DictConfig, key: str, allowed: tuple) -> None:
    values = cfg.get(key)
    if not OmegaConf.is_list(values) or not len(values):
        raise ConfigError(f"{key}={values!r}: must be a non-empty list, e.g. {key}=[{allowed[0]}]")
    for value in values:
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")


def _positive_ints(cfg: DictConfig, key: str) -> None:
    values = cfg.get(key)
    values = list(values) if OmegaConf.is_list(values) else [values]
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise ConfigError(f"{key}={cfg.get(key)!r}: must be integers >= 1")


def check_options(cfg: DictConfig) -> tuple[torch.device, Path]:
    """Every option checked before anything is measured (ConfigError, one line): the device and the
    output file too, so that a bad `out` does not fail after the whole benchmark."""
    check_booleans(cfg, "bench")
    _choices(cfg, "engines", ENGINES)
    _choices(cfg, "precisions", PRECISIONS)
    _choices(cfg, "norms", NORMS)
    for key in ("width", "steps", "rounds", "epoch_images", "batch_sizes", "m"):
        _positive_ints(cfg, key)
    if cfg.threads is not None:
        _positive_ints(cfg, "threads")
    try:
        device = torch.device(cfg.device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device={cfg.device!r}: not a device (cpu, cuda, cuda:N)") from err
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={cfg.device!r}: must be cpu, cuda or cuda:N")
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"device={cfg.device}: no such CUDA device here; use device=cpu")
    out = Path(hydra.utils.to_absolute_path(cfg.out))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"out={cfg.out}: its folder cannot be created ({err.strerror or err})") from err
    if out.is_dir():
        raise ConfigError(f"out={cfg.out} is a folder; give a file name, e.g. out={out / 'results.json'}")
    return device, out


@hydra.main(version_base="1.3", config_path="../conf/bench", config_name="bench")
def main(cfg: DictConfig) -> None:
    run_command(bench, cfg, required="out=FILE")


def bench(cfg: DictConfig) -> None:
    device, out = check_options(cfg)
    quiet_lightning()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    hardware = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(
        f"PreAct ResNet-18 width {cfg.width}, {device.type} ({hardware}), torch {torch.__version__}; median of {cfg.steps} steps x {cfg.rounds} rounds",
        flush=True,
    )
    if device.type == "cpu" and "bf16" in cfg.precisions:
        feature = cpu_bf16_feature()
        print(f"bf16: native on this CPU ({feature})" if feature else f"{NO_BF16_CPU} (bf16 rows are emulated)")
    rates = matmul_rates(device, cfg.precisions)
    print(
        f"matmul rate (torch.mm, {MATMUL_N} x {MATMUL_N}): "
        + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in rates.items()),
        flush=True,
    )
    rows = run_step_rows(cfg, device, rates)
    result = {
        "device": device.type,
        "hardware": hardware,
        "torch": torch.__version__,
        "config": OmegaConf.to_container(cfg),
        "matmul_flops_per_s": rates,
        "steps": rows,
    }

    print(
        "\n| batch | norm | precision | channels_last | compile | method | engine | ms/step | vs SAM (m = batch) "
        "| vs fp32 | of matmul rate | epoch s (est.) |"
    )
    print("|---" * 12 + "|")
    for r in rows:
        share = "-" if r["of_matmul_rate"] is None else f"{100 * r['of_matmul_rate']:.2g}%"
        print(
            f"| {r['batch']} | {r['norm']} | {r['precision']} | {r['channels_last']} | {r['compile']} | {r['method']} | {r['engine']} | "
            f"{fmt(r['ms'], '.1f')} | {fmt(r['vs_sam'], '.2f')} | {fmt(r['vs_fp32'], '.2f')} | {share} | "
            f"{fmt(r['epoch_s'], '.1f')} |" + (f" {r['error']}" if "error" in r else "")
        )
    if table := precision_table(rows):
        print(
            "\nms/step by precision and layout (ratio to fp32 of the same line; share of the matmul rate of "
            "the precision, FLOPs = forward + backward x passes):"
        )
        print("\n".join(table))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") and device.type == "cpu" else None
    warning = load_warning(rows, load, os.cpu_count())
    if warning:
        print(warning, flush=True)
    result["warning"] = warning
    if cfg.loops:
        loops = loop_times(cfg, device)
        result["loops_ms"] = {**loops, "lightning/plain": loops["lightning"] / loops["plain"]}
        print(
            f"\nSAM training loop: plain PyTorch {loops['plain']:.1f} ms/step, Lightning {loops['lightning']:.1f} ms/step, "
            f"Lightning / plain = {loops['lightning'] / loops['plain']:.2f}"
        )
    if cfg.loaders:
        rates = loader_rates(cfg, device)
        result["loader_batches_per_s"] = rates
        print(
            f"training data: DataLoader {rates['DataLoader']:.0f} batches/s, device-resident {rates['device-resident']:.0f} batches/s "
            f"({rates['device-resident'] / rates['DataLoader']:.1f}x)"
        )
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
