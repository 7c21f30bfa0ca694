"""Lightning's progress bar, with the evaluation pass named for what it is here: the test set (the
paper reports test error and has no validation split)."""

from __future__ import annotations

from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
from pytorch_lightning.utilities.imports import _RICH_AVAILABLE


class RichTestProgressBar(RichProgressBar):
    @property
    def validation_description(self) -> str:
        return "test"


class TQDMTestProgressBar(TQDMProgressBar):
    @property
    def validation_description(self) -> str:
        return "test"


def progress_bar():
    """Rich when it is installed (Lightning's own choice), else tqdm."""
    return RichTestProgressBar() if _RICH_AVAILABLE else TQDMTestProgressBar()
