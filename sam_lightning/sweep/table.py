"""Runs grouped into table rows: one row per group (overrides minus seed), averaged over seeds.

Seeds are the unit of replication: runs of one group that share a seed (ERM runs that differed
only in the rho it ignores) are averaged first, so that duplicates never narrow the interval.
The best rho of a method is the row with the lowest mean test error among rows that differ only
in method.rho.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sam_lightning.sweep.collect import Run
from sam_lightning.sweep.keys import split_override
from sam_lightning.sweep.stats import bootstrap_ci, mean

METRICS = {"final": "test_error", "best": "best_test_error"}
# Overrides already shown in their own column (method, m, rho, data, model).
SHOWN_KEYS = frozenset({"method", "method.name", "method.m", "method.rho", "method.normalize",
                        "data", "data.name", "model", "model.arch"})


@dataclass
class Row:
    key: tuple[str, ...]
    runs: list[Run]
    values: list[float] = field(default_factory=list)       # one test error per seed
    train_values: list[float] = field(default_factory=list)
    seeds: list = field(default_factory=list)
    ci: tuple[float, float] | None = None
    best: bool = False
    other: tuple[str, ...] = ()

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def family(self) -> tuple[str, ...]:
        """The key without rho: rows of one family are one method at several rho."""
        return tuple(k for k in self.key if split_override(k)[0] != "method.rho")

    @property
    def label(self) -> str:
        return self.first.label

    @property
    def m(self) -> int | None:
        return self.first.m

    @property
    def rho(self) -> float | None:
        return self.first.rho

    @property
    def data(self) -> str:
        return str(self.first.config.get("data", {}).get("name", "?"))

    @property
    def model(self) -> str:
        return str(self.first.config.get("model", {}).get("arch", "?"))

    @property
    def test_mean(self) -> float:
        return mean(self.values)

    @property
    def train_mean(self) -> float | None:
        return mean(self.train_values) if self.train_values else None

    @property
    def family_label(self) -> str:
        return " ".join((self.label, *self.other))

    def sort_key(self):
        return (self.data, self.model, self.label, self.m or 0, self.other, -1.0 if self.rho is None else self.rho)


def _per_seed(runs: list[Run], attr: str) -> tuple[list, list[float]]:
    by_seed: dict = defaultdict(list)
    for run in runs:
        value = getattr(run, attr)
        if value is not None:
            by_seed[run.seed if run.seed is not None else run.name].append(float(value))
    seeds = sorted(by_seed, key=str)
    return seeds, [mean(by_seed[s]) for s in seeds]


def aggregate(runs: list[Run], metric: str = "final") -> list[Row]:
    """Rows sorted by data, model, method, m, rho; CIs computed; best rho of each method marked."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    groups: dict[tuple[str, ...], list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.key].append(run)
    rows = []
    for key, members in groups.items():
        row = Row(key=key, runs=members)
        row.seeds, row.values = _per_seed(members, METRICS[metric])
        _, row.train_values = _per_seed(members, "train_error")
        row.ci = bootstrap_ci(row.values)
        rows.append(row)
    common = set.intersection(*(set(r.key) for r in rows)) if rows else set()
    for row in rows:
        row.other = tuple(k for k in row.key if k not in common and split_override(k)[0] not in SHOWN_KEYS)
    families: dict[tuple[str, ...], list[Row]] = defaultdict(list)
    for row in rows:
        if row.rho is not None:
            families[row.family].append(row)
    for members in families.values():
        if len({r.rho for r in members}) > 1:
            min(members, key=lambda r: r.test_mean).best = True
    return sorted(rows, key=Row.sort_key)


def common_overrides(rows: list[Row]) -> list[str]:
    """Overrides shared by every row (e.g. experiment=smoke), shown once above the table."""
    if not rows:
        return []
    common = set.intersection(*(set(r.key) for r in rows))
    return sorted(k for k in common if split_override(k)[0] not in SHOWN_KEYS)
