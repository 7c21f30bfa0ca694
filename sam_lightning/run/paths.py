"""The repository the entry points run from, for conf/train/paths (`paths.root_dir`) and the
analysis configs' search path: outputs, multirun folders and the default data folder are anchored
there, so that a command does the same from any folder."""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "SAM_LIGHTNING_ROOT"
ROOT = Path(__file__).resolve().parents[2]  # the checkout of this package (an editable install)


def anchor_root() -> bool:
    """Sets SAM_LIGHTNING_ROOT to this checkout unless the caller set it (another root on purpose);
    True when it did, so that the caller can take it back (a process that runs several commands)."""
    if ROOT_ENV in os.environ:
        return False
    os.environ[ROOT_ENV] = str(ROOT)
    return True
