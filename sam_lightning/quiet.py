"""Lightning's console chatter, trimmed to what a researcher reads; its messages into the run's log.

`quiet_lightning()` (called by train.py once Hydra has set up logging):
  * routes Lightning's loggers through the root logger, so that Hydra's handlers put them on the
    console and into the run's train.log (Lightning gives itself a private console handler when
    it is imported before logging is configured), and Python warnings too;
  * drops the lines that carry no information for these runs: the LitLogger advertisement, and
    "GPU/TPU available" on a run that has neither;
  * silences a deprecation warning Lightning raises from its own code.
"""

from __future__ import annotations

import logging
import warnings

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")


class _DropChatter(logging.Filter):
    def __init__(self, drop_device_lines: bool) -> None:
        super().__init__()
        self.prefixes = ("💡 Tip",) + (("GPU available:", "TPU available:") if drop_device_lines else ())

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def silence_deprecations() -> None:
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def quiet_lightning(on_cpu: bool) -> None:
    silence_deprecations()
    logging.captureWarnings(True)
    chatter = _DropChatter(drop_device_lines=on_cpu)
    for name in LIGHTNING_LOGGERS:
        lg = logging.getLogger(name)
        for handler in list(lg.handlers):
            if type(handler) is logging.StreamHandler:  # Lightning's own console handler
                lg.removeHandler(handler)
        lg.propagate = True
        for child in ("utilities.rank_zero", "trainer.connectors.logger_connector.logger_connector"):
            logging.getLogger(f"{name}.{child}").addFilter(chatter)
