"""A regime's criterion: what its baseline runs must reach for the regime to test the paper's claims.

The paper measures its findings on models that fit their training data (and, under label noise,
once ERM has memorized the flipped labels). A laptop preset states that as a `criterion` node, and
every run of the methods it names checks it at the end (one log line, `criterion` in results.json):

    criterion:
      metric: train_eval/error   # a per-epoch key of results.json's history
      at_most: 0.01              # or at_least: 0.5 (exactly one of the two)
      by_fraction: 0.75          # within the first 75% of the epochs (the piecewise schedule's second drop)
      methods: [erm]             # whose runs it applies to

    Criterion.from_mapping(node).check(history, max_epochs)
      -> {"metric", "rule", "value", "epoch", "met"}

Before a run starts, `build_run` checks that the metric is one the run logs and `check_methods`
that each name in methods is a method's: a typo would otherwise train to the end unchecked.

The best value inside the window counts (the lowest for at_most, the highest for at_least): the
question is whether the model got there, not where one noisy epoch left it. A run that logged the
metric in none of the window's epochs has value None and does not meet it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sam_lightning.settings.config import ConfigError, did_you_mean, from_mapping, is_number


@dataclass(frozen=True)
class Criterion:
    metric: str
    at_most: float | None = None
    at_least: float | None = None
    by_fraction: float = 1.0
    methods: tuple[str, ...] | list[str] = ("erm",)

    def __post_init__(self) -> None:
        if not self.metric:
            raise ConfigError("criterion.metric: must name a per-epoch metric, e.g. train_eval/error")
        if (self.at_most is None) == (self.at_least is None):
            raise ConfigError("criterion: give exactly one of at_most and at_least")
        if not is_number(self.by_fraction) or not 0 < self.by_fraction <= 1:
            raise ConfigError(f"criterion.by_fraction={self.by_fraction!r}: must be in (0, 1] (a share of the epochs)")
        if isinstance(self.methods, str) or not all(isinstance(m, str) for m in self.methods):
            raise ConfigError(f"criterion.methods={self.methods!r}: must be a list of method names, e.g. [erm]")
        object.__setattr__(self, "methods", tuple(self.methods))

    @classmethod
    def from_mapping(cls, values: Mapping | None) -> Criterion | None:
        return None if values is None else from_mapping(cls, "criterion", values)

    def check_methods(self, names: Collection[str]) -> None:
        """Each of `methods` is one of `names`, the methods' names: a typo would apply to no run."""
        for name in self.methods:
            if name not in names:
                raise ConfigError(
                    f"criterion.methods: {name!r} is no method's name{did_you_mean(name, names)} "
                    f"(names: {', '.join(sorted(names))})"
                )

    def applies_to(self, method: str) -> bool:
        return method in self.methods

    def last_epoch(self, max_epochs: int) -> int:
        """The last epoch (counted from 1) of the window."""
        return max(1, round(self.by_fraction * max_epochs))

    def rule(self, max_epochs: int) -> str:
        bound = f"<= {self.at_most:g}" if self.at_most is not None else f">= {self.at_least:g}"
        return f"{self.metric} {bound} by epoch {self.last_epoch(max_epochs)} of {max_epochs}"

    def check(self, history: Sequence[Mapping], max_epochs: int) -> dict:
        """The best value of the metric in the window's epochs (history epochs count from 0), the
        epoch it was reached (from 1) and whether it meets the bound."""
        window = [
            h for h in history if h.get(self.metric) is not None and h.get("epoch", 0) < self.last_epoch(max_epochs)
        ]
        best = None
        if window:
            pick = min if self.at_most is not None else max
            best = pick(window, key=lambda h: h[self.metric])
        value = None if best is None else float(best[self.metric])
        met = value is not None and (value <= self.at_most if self.at_most is not None else value >= self.at_least)
        return {
            "metric": self.metric,
            "rule": self.rule(max_epochs),
            "value": value,
            "epoch": None if best is None else best["epoch"] + 1,
            "met": met,
        }

    def describe(self, result: Mapping) -> str:
        """One line for the run's log."""
        value = "never logged" if result["value"] is None else f"{result['value']:.4g} (epoch {result['epoch']})"
        return f"criterion {'met' if result['met'] else 'NOT met'}: {result['rule']}; best {value}"
