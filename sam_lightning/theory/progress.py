"""Progress of the theory runs' step loops: a log line at every tenth of the steps,

    1-SAM: step 4000/20000 (20%), elapsed 0:01:02, ETA 0:04:08

Long runs (`python theory.py experiment=relu_1d`: minutes) would otherwise print nothing until
their end. The lines go to the `sam_lightning.theory` logger at INFO: theory.py shows them (and
writes them to the run's log); a library call or a test, with logging's default WARNING level, stays
quiet. A loop wraps its range: `for step in progress(range(n), label):`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from sam_lightning.run.multirun_progress import clock

log = logging.getLogger("sam_lightning.theory")


def progress(steps: range, label: str, parts: int = 10) -> Iterator[int]:
    """The items of `steps`, with a log line each time another 1/parts of them is done. A loop that
    stops early (a diverged or converged run) simply reports no further line."""
    total = len(steps)
    marks = {round(total * i / parts) for i in range(1, parts + 1)} - {0}
    started = time.time()

    def report(done: int) -> None:
        elapsed = time.time() - started
        eta = elapsed / done * (total - done)
        log.info(
            "%s: step %d/%d (%d%%), elapsed %s, ETA %s",
            label,
            done,
            total,
            100 * done // total,
            clock(elapsed),
            clock(eta),
        )

    for done, step in enumerate(steps):
        if done in marks:  # `done` steps have finished
            report(done)
        yield step
    if total in marks:
        report(total)
