"""Lightning callbacks of the training runs, one per file.

Imported by name (`sam_lightning.training.callbacks.rng_state.RNGState`, ...), from train.py and from the
`_target_` entries of the conf/train/callbacks group; this package itself imports nothing, so that
naming one callback does not load the others.
"""
