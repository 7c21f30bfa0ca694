"""The training methods: one class per file, each selected in conf/train/method/ by its `_target_`.

Every method is a `Method` (ERM included); the SAM variants are `Variant`s, methods with an ascent
step. To add one: subclass `Variant` (or `SAM`), override `perturbation` and/or `descent`, and
write a YAML with its `_target_` and keys (README: "Add your own SAM variant").
"""

from sam_lightning.core.method import GradFn, Method, Params, Variant, method_names
from sam_lightning.variants.asam import ASAM
from sam_lightning.variants.erm import ERM
from sam_lightning.variants.gsam import GSAM
from sam_lightning.variants.nsam import NSAM
from sam_lightning.variants.random import RandomPerturbation
from sam_lightning.variants.sam import SAM, projected_ascent
from sam_lightning.variants.switched import SwitchedSAM

__all__ = [
    "ASAM",
    "ERM",
    "GSAM",
    "NSAM",
    "SAM",
    "GradFn",
    "Method",
    "Params",
    "RandomPerturbation",
    "SwitchedSAM",
    "Variant",
    "method_names",
    "projected_ascent",
]
