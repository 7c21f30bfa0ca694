"""Checkpoints that fail to save fail the run.

Lightning's local checkpoint writer catches a PermissionError (an unwritable checkpoints/ folder)
and goes on without a word, so a run could end `finished` with no checkpoint at all. This plugin
saves as Lightning does, then checks that the file was written by this save; if not, the run stops
with an OSError that results.json records as its failure.
"""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.plugins.io import TorchCheckpointIO


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class CheckedCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        target = Path(path)
        before = _stamp(target)
        super().save_checkpoint(checkpoint, path, storage_options=storage_options)
        after = _stamp(target)
        if after is None or after == before:
            raise OSError(f"checkpoint {target} was not written (is {target.parent} writable?)")
