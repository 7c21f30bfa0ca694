"""A Hydra callback: an optimizing sweeper's search space (hydra.sweeper.params, Optuna) and its
number of trials checked in one line before the first trial, instead of a traceback from inside the
sweeper.

An interval must run from low to high, and a log interval needs bounds > 0; a range must hold at
least one value; hydra.sweeper.n_trials must be at least 1. Runs at on_multirun_start, before the
sweeper reads the space (and before the sweep folder is made: conf/train/train.yaml lists it first).
"""

from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, RangeSweep
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sam_lightning.entry import BAD_INPUT, fail
from sam_lightning.settings.config import is_int


def search_space_problem(params: dict) -> str | None:
    """One line naming the first bad entry of a search space {key: "interval(a, b)", ...}, or None."""
    parser = OverridesParser.create()
    for key, text in params.items():
        try:
            override = parser.parse_override(f"{key}={text}")
        except HydraException as err:
            return f"hydra.sweeper.params.{key}={text}: cannot be parsed ({str(err).splitlines()[0]})"
        value = override.value()
        if isinstance(value, IntervalSweep):
            if not value.start < value.end:
                return f"hydra.sweeper.params.{key}={text}: the interval's low bound must be below its high bound"
            if "log" in value.tags and value.start <= 0:
                return f"hydra.sweeper.params.{key}={text}: a log interval needs bounds > 0"
        elif isinstance(value, RangeSweep) and not value.shuffle:
            step = value.step or 1
            if (value.stop - value.start) * step <= 0:
                return f"hydra.sweeper.params.{key}={text}: the range holds no value"
    return None


def trials_problem(sweeper) -> str | None:
    """One line when an optimizing sweeper is told to run no trial (n_trials < 1), else None."""
    if "n_trials" not in sweeper:  # Hydra's basic sweeper: the jobs are the grid's
        return None
    n_trials = sweeper.get("n_trials")
    if not is_int(n_trials) or n_trials < 1:
        return f"hydra.sweeper.n_trials={n_trials!r}: must be an integer >= 1 (the trials the study runs)"
    return None


class SearchSpaceCheck(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        sweeper = config.hydra.get("sweeper") or {}
        if hasattr(sweeper, "get") and (problem := trials_problem(sweeper)):
            fail(problem, BAD_INPUT)
        params = dict(sweeper.get("params") or {}) if hasattr(sweeper, "get") else {}
        for arg in config.hydra.overrides.get("task") or []:  # sweeps given on the command line
            key, sep, text = str(arg).partition("=")
            if sep and any(word in text for word in ("interval(", "range(")):
                params[key.lstrip("+~")] = text
        problem = search_space_problem({str(k): str(v) for k, v in params.items()})
        if problem:
            fail(problem, BAD_INPUT)
