"""Where a number came from: the code's git commit and the software and hardware that ran it.

    provenance() -> {"git_commit": "48103d2...", "git_dirty": False, "python": "3.11.9", "torch": "2.14.1",
                     "lightning": "2.6.6", "hydra": "1.3.8", "cpu": "AMD EPYC ...", "gpu": ["NVIDIA H100 ..."]}

The commit is that of the repository holding this package (an editable install: the code that ran);
`git_dirty` says whether its tracked files differed from that commit. Both are None outside a git
checkout or without git. `gpu` lists the CUDA devices this process sees (empty on a CPU).
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from sam_lightning.settings.threads import cpu_name

CODE_ROOT = Path(__file__).resolve().parents[2]
GIT_TIMEOUT_S = 10  # a slow network file system, never a hang


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(CODE_ROOT), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def provenance() -> dict:
    """The git commit (and whether the tree was dirty), the versions of Python, torch, Lightning and
    Hydra, and the CPU's and GPUs' names."""
    import hydra
    import pytorch_lightning as pl
    import torch

    commit = _git("rev-parse", "HEAD")
    changes = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    return {
        "git_commit": commit or None,
        "git_dirty": None if changes is None else bool(changes),
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # a str subclass that YAML would write as an object
        "lightning": str(pl.__version__),
        "hydra": str(hydra.__version__),
        "cpu": cpu_name(),
        "gpu": gpus,
    }
