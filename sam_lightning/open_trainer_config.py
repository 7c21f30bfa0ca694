"""`trainer.<any pl.Trainer argument>=value` on the command line, without Hydra's `+`.

Hydra closes every composed config node (struct mode) before it applies command-line overrides, so
a key the YAML files do not list needs `+key=value`. A node keeps a struct flag of its own, though:
this module stores an open (non-struct) node in Hydra's ConfigStore, and conf/train/trainer/default.yaml
places it under `trainer` first (`- /open_trainer@_here_`). Import this module before composing
conf/train (train.py does; so does the test suite's compose helper).
"""

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

_open = OmegaConf.create({})
OmegaConf.set_struct(_open, False)
ConfigStore.instance().store(name="open_trainer", node=_open)
