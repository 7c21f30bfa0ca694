"""The YAML composes with Hydra alone: no module of this project has to be imported first (no config
resolvers or config nodes registered as an import's side effect), and every value resolves."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

# Run in a fresh interpreter: the test process has imported the whole project already.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    def resolved(tree, name, overrides):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(Path("conf", tree).resolve()), version_base="1.3"):
            cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)  # as Hydra does before a job: ${hydra:...} resolves
        job = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
        str(cfg.hydra.sweep.dir)
        return job, str(cfg.hydra.run.dir)

    cases = [(tree, name, overrides) for tree, name, overrides in json.loads(sys.argv[1])]
    out = [resolved(*case) for case in cases]
    print(json.dumps({"out": out, "imported": sorted(m for m in sys.modules if m.split(".")[0] in ("sam_lightning", "train", "theory"))}))
    """
)

TRAIN_EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "train" / "experiment").glob("*.yaml"))
THEORY_EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "theory" / "experiment").glob("*.yaml"))
CASES = [
    ("train", "train", []),
    ("train", "train", ["data=cifar100", "logger=[csv,tensorboard]", "trainer.max_epochs=3"]),
    *[("train", "train", [f"experiment={e}"]) for e in TRAIN_EXPERIMENTS],
    *[("theory", "theory", [f"experiment={e}", "method=sam_m1"]) for e in THEORY_EXPERIMENTS],
    ("analysis", "sharpness", ["ckpt=x.ckpt", "data=cifar100", "data.root=/elsewhere"]),
    ("analysis", "sharpness", ["ckpt=x.ckpt", "data.root=/elsewhere", "experiment=laptop_fig2", "sweep=s"]),
    ("analysis", "interpolation", ["ckpt_a=a.ckpt", "ckpt_b=b.ckpt", "data=synthetic"]),
    ("analysis", "evaluate", ["ckpt_path=a.ckpt"]),
]


def compose_alone(cases) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(cases)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a fresh interpreter: nothing of the project imported
def test_every_tree_composes_and_resolves_with_hydra_alone():
    got = compose_alone(CASES)
    assert got["imported"] == []
    by_case = dict(zip([" ".join([t, n, *o]) for t, n, o in CASES], got["out"]))
    default, run_dir = by_case["train train"]
    assert default["model"]["arch"] == "preact_resnet18" and default["trainer"]["max_epochs"] == 200
    folder, microseconds = run_dir.rsplit("_", 1)  # outputs/<date>/<time>_<method>_<data>_<microseconds>
    assert folder.startswith("./outputs/") and folder.endswith("_sam_cifar10")  # paths.log_dir: root_dir, "." here
    assert len(microseconds) == 6 and microseconds.isdigit()
    paired, _ = by_case["train train data=cifar100 logger=[csv,tensorboard] trainer.max_epochs=3"]
    assert paired["model"]["arch"] == "preact_resnet34" and list(paired["logger"]) == ["csv", "tensorboard"]
    diag, theory_dir = by_case["theory theory experiment=diag_net method=sam_m1"]
    assert (diag["train"]["lr"], diag["method"]["rho_paper"]) == ("1/d", "2.5/d")  # the paper's units, as stated
    assert theory_dir.startswith("outputs/theory/") and "_diag_net_sam_" in theory_dir
    moved, _ = by_case["analysis sharpness ckpt=x.ckpt data=cifar100 data.root=/elsewhere"]
    assert (moved["data"]["name"], moved["data"]["root"]) == ("cifar100", "/elsewhere") and "model" not in moved
    alone, _ = by_case["analysis sharpness ckpt=x.ckpt data.root=/elsewhere experiment=laptop_fig2 sweep=s"]
    assert alone["data"] == {"root": "/elsewhere"} and alone["n"] == 256


def test_the_analysis_data_options_are_the_training_ones():
    analysis, train = (
        sorted(p.name for p in (ROOT / "conf" / t / "data").glob("*.yaml")) for t in ("analysis", "train")
    )
    assert analysis == train
    for name in analysis:
        text = (ROOT / "conf" / "analysis" / "data" / name).read_text()
        assert f"- /train/data/{name.removesuffix('.yaml')}@_here_" in text  # a pointer, no settings of its own
    assert not [p for p in (ROOT / "conf").rglob("*") if p.is_symlink()]


@pytest.mark.slow  # starts train.py
def test_train_prints_the_resolved_config():
    proc = subprocess.run(
        [sys.executable, "train.py", "experiment=smoke", "--cfg", "job", "--resolve"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "${" not in proc.stdout
        and "  arch: preact_resnet18" in proc.stdout
        and "    _target_: pytorch_lightning.loggers.CSVLogger" in proc.stdout
    )
