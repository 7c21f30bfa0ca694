"""How many CPU threads a run's torch uses, chosen on purpose and recorded.

torch's default (one thread per logical CPU, in every process) oversubscribes a machine as soon as
two runs share it (a multirun's parallel jobs, or a test suite beside a run) and makes each 5-10x
slower. Float reductions are also summed in another order with another thread count, so a result
is only bit-for-bit repeatable on the same kind of CPU with the same number of threads.

cpu_threads=auto: OMP_NUM_THREADS when it is set; else the CPUs this process may use divided by the
jobs a parallel launcher runs at once (hydra.launcher.n_jobs), at least 1. An integer sets it.
"""

from __future__ import annotations

import os
import platform


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallel_jobs() -> int:
    """Jobs run at once by this Hydra multirun's launcher (1 outside a parallel multirun)."""
    from sam_lightning.settings.hydra_job import is_multirun, job

    hydra_cfg = job()
    if not is_multirun(hydra_cfg):  # also no Hydra run (tests, the compose API)
        return 1
    n_jobs = hydra_cfg.launcher.get("n_jobs", 1) if hydra_cfg.get("launcher") else 1
    return max(1, int(n_jobs)) if isinstance(n_jobs, int) and n_jobs > 0 else available_cpus()  # joblib's -1: all


def choose_threads(setting) -> int:
    if setting != "auto":
        return int(setting)
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, available_cpus() // parallel_jobs())


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), for stating which machine made a number."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
