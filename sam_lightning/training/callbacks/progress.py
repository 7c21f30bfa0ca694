"""Lightning's progress bar, with the evaluation pass (Lightning's validation loop) named for the set it
always evaluates first: "test", the set the paper reports (a validation split, data.val_fraction > 0,
and data.eval_train's training images are evaluated in the same pass after it: `DataSpec.eval_sets`);
and epochs counted from 1 ("Epoch 1/200"), as the plots and the summary line count them (results.json
keeps Lightning's 0-based index)."""

from __future__ import annotations

from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
from pytorch_lightning.utilities.imports import _RICH_AVAILABLE


def epoch_description(current_epoch: int, max_epochs: int | None) -> str:
    return f"Epoch {current_epoch + 1}" + (f"/{max_epochs}" if max_epochs not in (None, -1) else "")


class RichTestProgressBar(RichProgressBar):
    @property
    def validation_description(self) -> str:
        return "test"

    def _get_train_description(self, current_epoch: int) -> str:
        text = epoch_description(current_epoch, self.trainer.max_epochs)
        return f"{text:{len(self.validation_description)}}"  # padded as Lightning's, against flicker


class TQDMTestProgressBar(TQDMProgressBar):
    @property
    def validation_description(self) -> str:
        return "test"

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(epoch_description(trainer.current_epoch, trainer.max_epochs))


def progress_bar():
    """Rich when it is installed (Lightning's own choice), else tqdm."""
    return RichTestProgressBar() if _RICH_AVAILABLE else TQDMTestProgressBar()
