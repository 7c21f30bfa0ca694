"""Mean and 95% bootstrap confidence interval over seeds (or inits), and the one way to write and name them.

seaborn's default error bar, errorbar=("ci", 95): resample the values with replacement, take the
mean of each resample, and report the 2.5th and 97.5th percentiles of those means (the percentile
bootstrap). scipy.stats.bootstrap does the resampling; a fixed generator makes tables repeatable.
With two or three values that interval is their range [min, max] (every value alone is a resample
with probability 1/9 or 1/27, more than 2.5%), so it is taken as the range directly and named so
(`interval_name`): "range", not "95% CI", wherever every interval shown is one.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

N_RESAMPLES = 10_000  # seaborn uses 1000; more resamples only cost milliseconds and less jitter
RANGE_UP_TO = 3  # up to this many values, the 95% percentile-bootstrap interval is their range [min, max]


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """(low, high) of the mean's percentile-bootstrap interval; None for fewer than 2 values."""
    data = np.asarray(values, dtype=float)
    if data.ndim != 1:
        raise ValueError(f"bootstrap_ci takes a flat list of numbers, got shape {data.shape}")
    if len(data) < 2:
        return None
    if len(data) <= RANGE_UP_TO and confidence == 0.95:
        return float(data.min()), float(data.max())  # what the bootstrap gives, without its rounding
    if np.all(data == data[0]):
        return float(data[0]), float(data[0])  # every resample has the same mean
    # scipy >= 1.15 takes rng=; older releases only random_state=.
    gen = np.random.default_rng(seed)
    rng = {"rng": gen} if "rng" in inspect.signature(stats.bootstrap).parameters else {"random_state": gen}
    res = stats.bootstrap(
        (data,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        vectorized=True,
        **rng,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def interval_name(counts) -> str | None:
    """What intervals over groups of these sizes are, for headers, titles and legends: "range" when
    every group with an interval has 2-3 values, "95% CI" when every one has more, "95% CI or range"
    for a mix; None when no group has an interval (single values)."""
    sizes = {int(n) for n in counts if n == n and n >= 2}  # n == n: not NaN
    if not sizes:
        return None
    if max(sizes) <= RANGE_UP_TO:
        return "range"
    return "95% CI" if min(sizes) > RANGE_UP_TO else "95% CI or range"


def interval_note(counts, over: str = "seeds") -> str:
    """The footnote that says what the intervals of groups of these sizes are."""
    name = interval_name(counts)
    single = f"none for a single {over.removesuffix('s')}"
    if name == "range":
        return f"range: [min, max] over {over} (with 2-{RANGE_UP_TO} {over}; {single})."
    if name == "95% CI":
        return f"95% CI: percentile bootstrap of the mean over {over} ({single})."
    if name is None:
        return f"No interval: a single {over.removesuffix('s')} per row."
    return (
        f"95% CI: percentile bootstrap of the mean over {over}, for {RANGE_UP_TO + 1} or more {over}; "
        f"with 2-{RANGE_UP_TO} {over} the interval is their range [min, max]; {single}."
    )


def mean_ci(values: Sequence[float], n_resamples: int = N_RESAMPLES) -> tuple[float, float, float]:
    """(mean, low, high) over the values; low = high = NaN without an interval."""
    ci = bootstrap_ci(values, n_resamples=n_resamples)
    mean = float(np.mean(values)) if len(values) else math.nan
    return (mean, *(ci or (math.nan, math.nan)))


def format_mean_ci(
    mean: float, low: float = math.nan, high: float = math.nan, scale: float = 1.0, spec: str = ".3g"
) -> str:
    """The one way numbers over seeds are written: `mean [low, high]`, or `mean` without an interval."""
    if mean is None or not math.isfinite(mean):
        return "-"
    text = format(scale * mean, spec)
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        text += f" [{format(scale * low, spec)}, {format(scale * high, spec)}]"
    return text
