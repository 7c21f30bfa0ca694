"""A method's class where only its config is at hand, and what that class says of the config.

    method_class({"_target_": "sam_lightning.variants.ERM", "rho": 0.1})   # -> ERM
    uses_rho({"name": "random", "noise": "gaussian"})                      # -> False (RandomPerturbation.uses_rho)
    method_label({"name": "sam", "m": 128})                                # -> "sam_m128" (SAM.label)

A config is a composed `method` node, a results.json record (`config.method`) or a checkpoint's
(`describe()` and the class): its `_target_` names the class; a record without one names it by its
`name` (the class whose runs carry that name). Every rule about a method (whether rho changes
what it computes, how tables and run names call it) is the class's own (`Method.uses_rho`,
`Method.label`): no code outside the classes decides by a method's name.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any

from sam_lightning.core.method import Method


def _classes() -> list[type[Method]]:
    found, todo = [], [Method]
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@functools.cache
def _class_of_target(target: str) -> type[Method] | None:
    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except Exception:  # noqa: BLE001 - a class that cannot be imported here: known by its name, if at all
        return None
    return cls if isinstance(cls, type) and issubclass(cls, Method) else None


def method_class(settings: Mapping[str, Any]) -> type[Method] | None:
    """The class of the method `settings` describe: its `_target_`, else the class that names its
    runs `name` (today or formerly); None when neither is known."""
    target = settings.get("_target_")
    if target:
        cls = _class_of_target(str(target))
        if cls is not None:
            return cls
    name = settings.get("name")
    for cls in _classes():  # the most general class first: a subclass that keeps its parent's name is not it
        own = "name" in vars(cls) or "names" in vars(cls)
        if own and (name in cls.names() or name in getattr(cls, "former_names", ())):
            return cls
    return None


def uses_rho(settings: Mapping[str, Any]) -> bool:
    """Whether rho changes what this method computes (`Method.uses_rho`); True for an unknown class."""
    cls = method_class(settings)
    return True if cls is None else cls.uses_rho(settings)


def ascends(settings: Mapping[str, Any]) -> bool:
    """Whether this method has an ascent step at all (`Method.ascends`: ERM has none); True for an unknown class."""
    cls = method_class(settings)
    return True if cls is None else cls.ascends


def method_label(settings: Mapping[str, Any]) -> str:
    """erm, sam, sam_m128, sam_const, nsam, erm_to_sam, ...: `Method.label` of its class; for a class
    not known here, its name (or its class's, in lower case)."""
    cls = method_class(settings)
    if cls is not None:
        return cls.label(settings)
    return str(settings.get("name") or str(settings.get("_target_", "?")).rsplit(".", 1)[-1].lower())
