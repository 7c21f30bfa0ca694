"""How fast a run computes its steps: the precision, the memory layout and torch.compile, each
resolved here once per run (`build_run`) from what the machine supports, and said in one log line.

    trainer.precision=auto   bf16-mixed on a CPU with native bf16 arithmetic (AMX or AVX-512 BF16)
                             and on a GPU that supports bf16; else 32-true (float32)
    channels_last=auto       on for a GPU; on a CPU only when training in bf16 with BatchNorm
    compile=auto             on for a CPU run in float32 (not with method.engine=vmap), else off

The resolved precision replaces "auto" in the run's config, so results.json and the fingerprint
that guards a resume (sam_lightning/settings/fingerprint.py) record what was computed, not the word auto.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sam_lightning.settings.config import ConfigError, require_bool

# CPU features that make bf16 matrix products native (AMX tiles, AVX-512 BF16 dot products). Without
# them oneDNN emulates bf16 through float32 and autocast only adds casts.
BF16_CPU_FEATURES = ("amx_bf16", "avx512_bf16")
NO_BF16_CPU = "no bf16 support on this CPU: float32"
# Measured (README, Speed): a CPU step with BatchNorm in bf16 autocast is faster in channels_last
# (whole laptop run: 0.42x/0.57x of float32 for ERM/SAM, vs 0.48x/0.63x in bf16 alone); with
# GroupNorm it is not (CPU_GROUPNORM_CHANNELS_LAST in train.py says so when forced).
# Measured (README, Speed; width 16, batch 64, one thread): the compiled backbone makes the float32
# step 0.65-0.71x the eager one for ERM and SAM (4-SAM through the loop 0.68-0.96x); through 12-epoch
# regime-A runs the steady epoch took 0.77x (ERM) and 0.81x (SAM), so it repays its seconds to a minute
# or two of compiling within a laptop run; in bf16 with channels_last 0.72-0.87x (ERM, SAM) and
# 0.93-0.97x (4-SAM) per step.
FLOAT32 = ("32-true", "32", 32)


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags: torch's own detection (torch.cpu.get_capabilities, in recent torch),
    else the `flags` line of /proc/cpuinfo (Linux); empty where neither says."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        return {k for k, v in capabilities().items() if v is True}
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_bf16_feature(features: set[str] | None = None) -> str | None:
    """The feature that gives this CPU native bf16 arithmetic (amx_bf16 or avx512_bf16), or None."""
    features = cpu_features() if features is None else features
    return next((f for f in BF16_CPU_FEATURES if f in features), None)


def is_bf16(precision) -> bool:
    return str(precision).startswith("bf16")


@dataclass(frozen=True)
class SpeedSettings:
    """The resolved settings and, for the log, how each was chosen."""

    precision: str | int
    channels_last: bool
    compile: bool
    why: str  # one line: "precision bf16-mixed (auto: this CPU has amx_bf16), channels_last on (...), compile off"


def resolve_speed(
    precision, channels_last, compile, *, on_gpu: bool, norm: str, engine: str, features: set[str] | None = None
) -> SpeedSettings:
    """trainer.precision, channels_last and compile with their `auto` resolved for this machine.
    `engine`: the method's method.engine (compile and the vectorized engine exclude each other)."""
    require_bool("channels_last", channels_last, ("auto",))
    require_bool("compile", compile, ("auto",))
    if precision == "auto":
        if on_gpu:
            supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            precision, how = (
                ("bf16-mixed", "this GPU supports bf16") if supported else ("32-true", "no bf16 on this GPU")
            )
        elif feature := cpu_bf16_feature(features):
            precision, how = "bf16-mixed", f"this CPU has {feature}"
        else:
            precision, how = "32-true", NO_BF16_CPU
        precision_why = f"precision {precision} (trainer.precision=auto: {how})"
    else:
        precision_why = f"precision {precision}"

    if channels_last == "auto":
        if on_gpu:
            channels_last, how = True, "a GPU"
        else:
            channels_last = is_bf16(precision) and norm == "batch"
            how = "bf16 with BatchNorm on a CPU" if channels_last else "on a CPU only in bf16 with BatchNorm"
        layout_why = f"channels_last {'on' if channels_last else 'off'} (auto: {how})"
    else:
        layout_why = f"channels_last {'on' if channels_last else 'off'}"

    if compile is True and engine == "vmap":
        raise ConfigError(
            "compile=true with method.engine=vmap: torch.vmap cannot run a compiled forward (it would run "
            "eagerly); use method.engine=loop (or auto), or compile=false"
        )
    if compile == "auto":
        compile = not on_gpu and precision in FLOAT32 and engine != "vmap"
        how = "float32 on a CPU" if compile else "on only for float32 on a CPU, not with method.engine=vmap"
        compile_why = f"compile {'on' if compile else 'off'} (auto: {how})"
    else:
        compile_why = f"compile {'on' if compile else 'off'}"
    return SpeedSettings(precision, channels_last, compile, f"{precision_why}, {layout_why}, {compile_why}")
