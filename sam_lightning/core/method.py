"""What every method shares, ERM included, and the two hooks both m-SAM engines call.

Every method of conf/train/method/ is one frozen dataclass, a `Method`. The training system
(`sam_lightning.training.module`), its switch callback, the step (`sam_lightning.core.step.step_gradients`)
and the theory runners ask it the same questions and never look at its class:

    ascends                                          whether it has an ascent step at all (ERM: no)
    perturbs_at(epoch, switch_epoch)                 whether the steps of an epoch perturb the weights
    switch_epoch(max_epochs)                         the epoch where it switches (None: it never does)
    ascent_batch_for(x, y, memory, random_batch)     the batch the ascent gradient is taken on (None: x, y)

A `Variant` is a method with an ascent step: m-SAM and its relatives. Per chunk c of m examples the
engines (`sam_lightning.core.engine`) call

    e_c = variant.perturbation(w, grad_fn, rho)      how the perturbation is formed
    d_c = variant.descent(g_c, h_c)                  how the descent gradient is formed

with `grad_fn(e)` the gradient of the chunk's ascent objective at w + e (`grad_fn(None)`: at w; its
first result is g_c), and h_c the gradient of the chunk's objective at w + e_c. The optimizer then
steps with mean_c d_c. Tensors come as dicts {parameter name: tensor}.

The hooks must be pure functions of their arguments (no in-place changes to w, no `.item()`, no
branching on tensor values): the vectorized engine runs them under `torch.vmap`, all chunks at
once, and the chunk loop runs the very same code one chunk at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from sam_lightning.settings.config import ConfigError

Params = dict[str, Tensor]
GradFn = Callable[[Params | None], Params]  # e -> gradient of the ascent objective at w + e
Batch = tuple[Tensor, Tensor]  # inputs, targets
RandomBatch = Callable[[int, torch.device], Batch]  # n, device -> n training examples drawn uniformly


def tree_norm(tree: Mapping[str, Tensor]) -> Tensor:
    """The l2 norm of all tensors of `tree` taken together as one vector."""
    return torch.sqrt(tree_dot(tree, tree))


def tree_scale(tree: Mapping[str, Tensor], scale) -> Params:
    return {k: t * scale for k, t in tree.items()}


def tree_add(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Params:
    return {k: a[k] + b[k] for k in a}


def tree_dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Tensor:
    return sum((a[k] * b[k]).sum() for k in a)


def divides(m: int | None, batch_size: int) -> bool:
    """Whether chunks of m examples cut a batch of `batch_size` exactly (None: one chunk, always).
    The one statement of it: `check_batch_size` and the step's chunking (`sam_lightning.core.chunks`) ask it."""
    return m is None or (m >= 1 and batch_size % m == 0)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


ENGINES = ("auto", "loop", "vmap")


@dataclass(frozen=True, kw_only=True)
class Method:
    """A training method: its name, rho, and what the training system asks of it.

    rho: perturbation radius (ERM has no perturbation: its rho exists so that one grid covers ERM
    and SAM, `python train.py -m method=erm,sam method.rho=0.05,0.1`).
    """

    name: ClassVar[str]
    ascends: ClassVar[bool] = True  # False: no step ever perturbs the weights (ERM)

    rho: float = 0.1

    def __post_init__(self) -> None:
        check(isinstance(self.rho, (int, float)) and self.rho >= 0, f"method.rho={self.rho!r}: must be a number >= 0")

    # -- what the training system asks ----------------------------------------------------------
    def switch_epoch(self, max_epochs: int) -> int | None:
        """The epoch from which `perturbs_at` answers otherwise (fixed when training first starts and
        kept in checkpoints by the `MethodSwitch` callback); None: the method never switches."""
        return None

    def perturbs_at(self, epoch: int, switch_epoch: int | None) -> bool:
        """Whether the steps of `epoch` perturb the weights (False: the step is ERM's)."""
        return self.ascends

    def ascent_batch_for(self, x: Tensor, y: Tensor, memory: dict[str, Any], random_batch: RandomBatch) -> Batch | None:
        """The batch whose gradient forms this step's perturbation; None: the step's own (x, y).

        memory: a dict the training system keeps for the method across steps and in checkpoints
        (so that a resumed run continues exactly). random_batch(n, device): n training examples
        drawn uniformly, augmented as training batches are."""
        return None

    def current_rho(self, lr: float, base_lr: float) -> float:
        return self.rho

    def check_batch_size(self, batch_size: int, name: str = "the per-device batch size data.batch_size") -> None:
        """Raises ConfigError if the method cannot split a batch of `batch_size` (named `name` in
        the message); any batch size works unless a subclass says otherwise."""

    def describe(self) -> dict:
        """Plain data for checkpoints, results and labels: the name and every setting."""
        return {"name": self.name, **asdict(self)}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The names a run of this class can carry (results.json's method.name): its `name`."""
        name = getattr(cls, "name", None)
        return (name,) if isinstance(name, str) else ()

    # -- what records, names and sweeps ask of a config (sam_lightning.variants.lookup) ---------
    @classmethod
    def uses_rho(cls, settings: Mapping[str, Any]) -> bool:
        """Whether rho changes what a method of this class with these settings (a method config or
        `describe()`) computes. False (ERM): its runs that differ only in rho are one run."""
        return cls.ascends

    @classmethod
    def label(cls, settings: Mapping[str, Any]) -> str:
        """How run names, tags and sweep tables call a method of this class with these settings:
        its name (erm, sam, ...); a former name of the class reads as today's."""
        name = settings.get("name")
        return str(name) if name in cls.names() else next(iter(cls.names()), cls.__name__.lower())


def method_names() -> set[str]:
    """The names of every method class defined so far: the built-in ones, and a plugin's once its
    class is imported (a run's own method is). What a name that selects methods may be."""
    found, classes = set(), [Method]
    while classes:
        cls = classes.pop()
        found.update(cls.names())
        classes.extend(cls.__subclasses__())
    return found


@dataclass(frozen=True, kw_only=True)
class Variant(Method):
    """m-SAM and its relatives: a method with an ascent step. Settings every variant has:

    rho: perturbation radius; rho_schedule=lr scales it with the learning rate (rho_t = rho lr_t / lr_0).
    m: examples per chunk, each chunk with its own perturbation; None = the whole (per-device) batch.
    bn_ascent_updates_stats: whether ascent passes update BatchNorm running statistics (every pass
      normalizes with its own chunk's batch statistics either way).
    engine: loop (one chunk after the other), vmap (all chunks in one vectorized pass), auto (vmap
      where the variant allows it and there is more than one chunk). chunks_per_pass: at most this
      many chunks per vectorized pass (bounds memory: each chunk holds three parameter-sized
      tensors); None = all on a CPU, as many as fit in a quarter of the free memory on a GPU.
    """

    uses_gradient: ClassVar[bool] = True  # False: e is independent of the loss (drawn before any pass)
    vectorizable: ClassVar[bool] = True

    m: int | None = None
    rho_schedule: str = "constant"
    bn_ascent_updates_stats: bool = True
    engine: str = "auto"
    chunks_per_pass: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.m is None or (isinstance(self.m, int) and self.m >= 1),
            f"method.m={self.m!r}: must be a positive integer or null",
        )
        check(
            self.rho_schedule in ("constant", "lr"),
            f"method.rho_schedule={self.rho_schedule!r}: must be constant or lr",
        )
        check(self.engine in ENGINES, f"method.engine={self.engine!r}: must be one of {', '.join(ENGINES)}")
        check(
            self.chunks_per_pass is None or (isinstance(self.chunks_per_pass, int) and self.chunks_per_pass >= 1),
            f"method.chunks_per_pass={self.chunks_per_pass!r}: must be a positive integer or null",
        )

    # -- the two hooks -----------------------------------------------------------------------
    def perturbation(self, w: Params, grad_fn: GradFn | None, rho) -> Params:
        """e_c for one chunk. `grad_fn` is None when `uses_gradient` is False."""
        raise NotImplementedError

    def descent(self, ascent_grad: Params | None, perturbed_grad: Params) -> Params:
        """The chunk's descent gradient from g_c (the first ascent gradient, at w; None if the
        variant takes none) and h_c (the gradient at w + e_c). SAM: h_c."""
        return perturbed_grad

    # -- settings -----------------------------------------------------------------------------
    def current_rho(self, lr: float, base_lr: float) -> float:
        return self.rho * (lr / base_lr if self.rho_schedule == "lr" else 1.0)

    @classmethod
    def label(cls, settings: Mapping[str, Any]) -> str:
        """The name, then _m<m> for m-SAM chunks: sam_m128."""
        m = settings.get("m")
        return super().label(settings) + ("" if m is None else f"_m{m}")

    def check_batch_size(self, batch_size: int, name: str = "the per-device batch size data.batch_size") -> None:
        check(divides(self.m, batch_size), f"method.m={self.m} must divide {name}={batch_size}")
