"""The paper's theory experiments on small models (Sec. 4.2-4.3, App. A-B), run on a CPU in seconds.

    python theory.py experiment=diag_net method=sam_m1     # one diagonal-network run
    python theory.py experiment=fig6                       # the Fig. 6 table over seeds (a multirun)
    python theory.py experiment=relu_1d                    # the Fig. 7 ReLU functions

The methods are the training runs' (`sam_lightning.variants.ERM`, `SAM`), and every gradient goes
through `sam_lightning.core.step` (the step code of the deep networks), except with `step_code=vectorized`:
closed-form gradients of all chunks (or runs) at once, tested to give the same iterates. See docs/theory.md.
"""
