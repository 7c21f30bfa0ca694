"""The Lightning side of a run: the LightningModule, build_run, loggers, callbacks and console output."""
