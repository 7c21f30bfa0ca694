"""The running Hydra job, read in one place: every module that asks about it calls these.

    job()             the job's `hydra` node (HydraConfig.get()); None outside a Hydra job (a library
                      call, Hydra's compose API, a test)
    is_multirun()     inside a job of a multirun (-m), where a failure must not stop the other jobs
    task_overrides()  the job's command-line overrides (hydra.overrides.task); None outside a job
    saved_config()    the config Hydra keeps for .hydra/hydra.yaml; None outside a job
    set_early(config) a callback's on_run_start makes `config` the job's before Hydra does

Outside a job (a library call, a test) each answers as for no Hydra at all.
"""

from __future__ import annotations


def job():
    """The running job's `hydra` node, or None outside a Hydra job."""
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:
        return None
    return HydraConfig.get() if HydraConfig.initialized() else None


def is_multirun(hydra=None) -> bool:
    """Whether `hydra` (a job's or a multirun's `hydra` node; by default the running job's) is a
    multirun's (-m): the one test of it."""
    hydra = job() if hydra is None else hydra
    if hydra is None:
        return False
    from hydra.types import RunMode

    return hydra.get("mode") == RunMode.MULTIRUN


def task_overrides() -> list[str] | None:
    """The job's command-line overrides (what .hydra/overrides.yaml holds), or None outside a job."""
    hydra = job()
    return None if hydra is None else [str(o) for o in hydra.overrides.task]


def set_early(config) -> None:
    """For a Hydra callback's on_run_start: make `config` the job's now, as Hydra does right after
    the callbacks run, so that the ${hydra:runtime.choices...} of the run folder's name resolve there."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(config)


def saved_config():
    """The config Hydra saves as .hydra/hydra.yaml (the `hydra` node under its key), or None outside a job."""
    if job() is None:
        return None
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.instance().cfg
