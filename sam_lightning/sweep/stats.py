"""Mean and 95% bootstrap confidence interval over seeds, as the paper's plots show them (App. D).

seaborn's default error bar, errorbar=("ci", 95): resample the seeds with replacement, take the
mean of each resample, and report the 2.5th and 97.5th percentiles of those means (the percentile
bootstrap). scipy.stats.bootstrap does the resampling; a fixed generator makes tables repeatable.
With two or three seeds the interval is the range [min, max]: honest about how little 2-3 seeds say.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

N_RESAMPLES = 10_000  # seaborn uses 1000; more resamples only cost milliseconds and less jitter
SEED = 0


def _rng_kwargs(seed: int) -> dict:
    # scipy >= 1.15 takes rng=; older releases only random_state=.
    gen = np.random.default_rng(seed)
    return {"rng": gen} if "rng" in inspect.signature(stats.bootstrap).parameters else {"random_state": gen}


def mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED) -> tuple[float, float] | None:
    """(low, high) of the mean's percentile-bootstrap interval; None for fewer than 2 values."""
    data = np.asarray(values, dtype=float)
    if data.ndim != 1:
        raise ValueError(f"bootstrap_ci takes a flat list of numbers, got shape {data.shape}")
    if len(data) < 2:
        return None
    if np.all(data == data[0]):
        return float(data[0]), float(data[0])  # every resample has the same mean
    res = stats.bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", vectorized=True, **_rng_kwargs(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
