"""A Hydra callback: an optimizing sweeper's search space (hydra.sweeper.params, Optuna) checked in
one line before the first trial, instead of a traceback from inside the sweeper.

An interval must run from low to high, and a log interval needs bounds > 0; a range must hold at
least one value. Runs at on_multirun_start, before the sweeper reads the space.
"""

from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, RangeSweep
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sam_lightning.entry import BAD_INPUT, fail


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


class SearchSpaceCheck(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        sweeper = config.hydra.get("sweeper") or {}
        params = dict(sweeper.get("params") or {}) if hasattr(sweeper, "get") else {}
        for arg in config.hydra.overrides.get("task") or []:  # sweeps given on the command line
            key, sep, text = str(arg).partition("=")
            if sep and any(word in text for word in ("interval(", "range(")):
                params[key.lstrip("+~")] = text
        problem = search_space_problem({str(k): str(v) for k, v in params.items()})
        if problem:
            fail(problem, BAD_INPUT)
