"""The theory presets state step sizes and radii as the paper does; this turns them into the numbers a run uses.

    train.lr: 1/d              -> 1 / data.d        (App. B.3 states step sizes in units of 1/d)
    method.rho_paper: 2.5/d    -> method.rho = rho_from_paper_code(2.5 / data.d, method.m)
    method.rho_paper: 0.175    -> method.rho = rho_from_paper_code(0.175, method.m)   (0.35 for 1-SAM)

`train.lr`, `method.rho` and `method.rho_paper` (and `switch.to.*`) take a number or `<number>/d`.
`method.rho` is the radius in this project's units (Eq. 8) and wins when it is given (`method.rho=0.2`
on the command line, a preset's grid); `method.rho_paper`, the radius the paper's figures quote (its
code's), is used only when `method.rho` is null. The map between the two is `rho_from_paper_code`.
Plain code at build time, so that the YAML composes with Hydra alone (no resolvers to register).
"""

from __future__ import annotations

import copy
import re

from sam_lightning.settings.config import ConfigError
from sam_lightning.theory.spec import rho_from_paper_code

_PER_D = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*/\s*d\s*$")


def number(value, key: str, d) -> float | None:
    """A number, or `<number>/d` divided by the dimension d; None stays None."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    match = _PER_D.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"{key}={value!r}: must be a number or <number>/d (in units of 1/data.d)")
    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise ConfigError(f"data.d={d!r}: must be an integer >= 1 ({key}={value} is in units of 1/d)")
    return float(match.group(1)) / d


def method_in_project_units(method: dict, key: str, d) -> dict:
    """`method` with `rho` a number (from `rho_paper` when `rho` is null) and no `rho_paper` key."""
    out = dict(method)
    paper = out.pop("rho_paper", None)
    rho = number(out.get("rho"), f"{key}.rho", d)
    if rho is None and paper is not None:
        rho = rho_from_paper_code(number(paper, f"{key}.rho_paper", d), out.get("m"))
    if rho is None:
        out.pop("rho", None)  # a method given no radius at all (erm): the settings' default
    else:
        out["rho"] = rho
    return out


def in_project_units(config: dict) -> dict:
    """The resolved theory config with `train.lr`, `method.rho` and `switch.to.rho` as the numbers the run uses."""
    out = copy.deepcopy(config)
    d = (out.get("data") or {}).get("d")
    if out.get("train") is not None and "lr" in out["train"]:
        out["train"]["lr"] = number(out["train"]["lr"], "train.lr", d)
    if out.get("method") is not None:
        out["method"] = method_in_project_units(out["method"], "method", d)
    switch = out.get("switch") or {}
    if switch.get("to") is not None:
        switch["to"] = method_in_project_units(switch["to"], "switch.to", d)
    return out
