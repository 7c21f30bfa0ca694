"""Lightning's console chatter, trimmed to what a researcher reads; its messages into the run's log.

The trimming is Hydra's job_logging (conf/train/train.yaml, `hydra.job_logging`): Lightning's
loggers lose the console handler Lightning gives itself when it is imported before logging is
configured and propagate to Hydra's handlers (the console and the run's train.log), whose `chatter`
filter (`DropChatter`) drops the lines that carry no information for these runs: the LitLogger
advertisement, and "GPU/TPU available: False". What a logging config cannot do is here:

  * `quiet_lightning()` (called once Hydra has set up logging): Python warnings into the same log;
    for a process whose logging config does not route Lightning (bench/step_time.py's stdout
    config), the same routing and filter; and the deprecation below silenced;
  * `silence_deprecations()`: a deprecation warning Lightning raises from its own code.
"""

from __future__ import annotations

import logging
import warnings

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")


class DropChatter(logging.Filter):
    """Drops Lightning's LitLogger tip and its "GPU available: False" / "TPU available: False" lines
    (a device the machine has, used or not, is still said)."""

    PREFIXES = ("💡 Tip", "GPU available: False", "TPU available: False")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.PREFIXES)


def silence_deprecations() -> None:
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def quiet_lightning() -> None:
    silence_deprecations()
    logging.captureWarnings(True)
    for name in LIGHTNING_LOGGERS:
        lg = logging.getLogger(name)
        own = [h for h in lg.handlers if type(h) is logging.StreamHandler]  # Lightning's, left by no config
        if not own:
            continue
        for handler in own:
            lg.removeHandler(handler)
        lg.propagate = True
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, DropChatter) for f in handler.filters):
                handler.addFilter(DropChatter())
