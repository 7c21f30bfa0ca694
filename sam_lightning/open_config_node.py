"""An open config node: `trainer.<any pl.Trainer argument>=value`, `data.root=...` without Hydra's `+`.

Hydra closes every composed config node (struct mode) before it applies command-line overrides, so
a key that the YAML files do not list needs `+key=value`. A node keeps a struct flag of its own,
though: this module stores an open (non-struct) empty node in Hydra's ConfigStore as `open_node`,
and a config places it where any key may be given, first in its defaults list:

    conf/train/trainer/default.yaml        - /open_node@_here_    (any pl.Trainer argument)
    conf/analysis/{sharpness,interpolation}.yaml   - /open_node@data   (data.root=... alone)

Import this module before composing those configs (train.py, the analysis commands and the test
suite's compose helper do).
"""

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

_open = OmegaConf.create({})
OmegaConf.set_struct(_open, False)
ConfigStore.instance().store(name="open_node", node=_open)
