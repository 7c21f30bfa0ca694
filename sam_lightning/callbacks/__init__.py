"""Lightning callbacks, each configured from conf/train/callbacks/ by its `_target_`."""
