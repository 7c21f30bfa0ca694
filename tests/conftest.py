"""Shared test helpers: compose the real Hydra config with tiny limits, run jobs in-process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

# The suite runs as 2 pytest-xdist workers on 2 cores (make test): one thread each, and the same for
# the training subprocesses that tests start. Oversubscribed threads make tiny jobs 10x slower.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "train"
sys.path.insert(0, str(ROOT))  # train.py and sweep.py live at the top level

# Tiny but real: the smoke preset shrunk further. Every end-to-end test starts from these.
TINY = [
    "experiment=smoke",
    "trainer.max_epochs=1",
    "data.n_train=256",
    "data.n_test=128",
    "model.width=4",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def compose_config(overrides: list[str], config_name: str = "train", tree: str = "train"):
    """Compose `config_name` from one application's tree: conf/train, conf/analysis or conf/theory."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf" / tree), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(*overrides: str):
        return compose_config([*TINY, f"paths.output_dir={tmp_path / 'run'}", *overrides])

    return make


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch, tmp_path):
    # No test may reach W&B servers or read a developer's credentials.
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("NETRC", os.devnull)


def _tree_entries(*folders: Path, depth: int = 3) -> set[str]:
    """The paths below `folders`, `depth` levels deep (dated run folders: outputs/<date>/<run>, outputs/analysis/<date>/<run>)."""
    found: set[str] = set()

    def walk(folder: Path, left: int) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            found.add(entry.path)
            if left > 1 and entry.is_dir(follow_symlinks=False):
                walk(Path(entry.path), left - 1)

    for folder in folders:
        walk(folder, depth)
    return found


@pytest.fixture(autouse=True)
def _nothing_written_into_the_tree():
    """Tests write under tmp paths: a run folder left in the repository's outputs/ or multirun/ fails the test that left it."""
    watched = (ROOT / "outputs", ROOT / "multirun")
    before = _tree_entries(*watched)
    yield
    left = sorted(_tree_entries(*watched) - before)
    assert not left, f"written into the repository tree: {left[:5]}"


@pytest.fixture(autouse=True)
def _python_processes_only_in_slow_tests(request, monkeypatch):
    """Starting Python, torch and Lightning costs seconds: a test that starts a Python process is
    marked slow (make test-fast leaves those out), or fails here and says so."""
    if request.node.get_closest_marker("slow"):
        return
    start = subprocess.Popen.__init__

    def refuse_python(self, args, *rest, **kwargs):
        program = args if isinstance(args, (str, os.PathLike)) else args[0]
        if os.path.realpath(program) == os.path.realpath(sys.executable):
            raise AssertionError(f"{request.node.nodeid} starts a Python process: mark it @pytest.mark.slow")
        start(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse_python)


class StopAfterEpoch(pl.Callback):
    """A run stopped at the end of epoch `epoch` (after its checkpoints), as if killed there.
    Added from the command line: +callbacks.stop._target_=conftest.StopAfterEpoch +callbacks.stop.epoch=0"""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch >= self.epoch:
            trainer.should_stop = True


def stop_after(epoch: int) -> list[str]:
    return ["+callbacks.stop._target_=conftest.StopAfterEpoch", f"+callbacks.stop.epoch={epoch}"]


# -- every data source in its real on-disk format ------------------------------------------------
def _class_images(n: int, num_classes: int, seed: int) -> tuple:
    """n learnable 32x32 RGB uint8 images (a colour per class plus noise) and their labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    colours = rng.integers(30, 226, size=(num_classes, 3, 1, 1))
    images = colours[labels] + rng.normal(0, 40, size=(n, 3, 32, 32))
    return images.clip(0, 255).astype("uint8"), labels


def write_cifar(root: Path, name: str, n_train: int = 256, n_test: int = 128) -> Path:
    """A tiny CIFAR-10 (cifar-10-batches-py) or CIFAR-100 (cifar-100-python) in torchvision's own
    format: pickled dicts of flattened CHW uint8 rows. Only the md5 sums differ from the real files
    (tests bypass torchvision's check with `skip_cifar_md5`)."""
    import pickle

    num_classes = 10 if name == "cifar10" else 100
    x, y = _class_images(n_train + n_test, num_classes, seed=1)
    train = (x[:n_train].reshape(n_train, -1), y[:n_train].tolist())
    test = (x[n_train:].reshape(n_test, -1), y[n_train:].tolist())
    label_key = "labels" if name == "cifar10" else "fine_labels"

    def dump(path: Path, data, labels) -> None:
        with open(path, "wb") as f:
            pickle.dump({"data": data, label_key: labels, "coarse_labels": [0] * len(labels)}, f)

    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    if name == "cifar10":
        parts = 5  # data_batch_1 ... data_batch_5, as torchvision lists them
        for i in range(parts):
            sl = slice(i * n_train // parts, (i + 1) * n_train // parts)
            dump(folder / f"data_batch_{i + 1}", train[0][sl], train[1][sl])
        dump(folder / "test_batch", *test)
        meta = ("batches.meta", {"label_names": [f"c{k}" for k in range(10)]})
    else:
        dump(folder / "train", *train)
        dump(folder / "test", *test)
        meta = ("meta", {"fine_label_names": [f"c{k}" for k in range(100)]})
    with open(folder / meta[0], "wb") as f:
        pickle.dump(meta[1], f)
    return root


def write_imagefolder(root: Path, n_train: int = 256, n_test: int = 128, num_classes: int = 10) -> Path:
    """The same kind of images as PNG files in an ImageFolder tree (train/<class>/*, test/<class>/*)."""
    from torchvision.io import write_png

    x, y = _class_images(n_train + n_test, num_classes, seed=1)
    for i, (image, label) in enumerate(zip(x, y)):
        folder = root / ("train" if i < n_train else "test") / f"class{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        write_png(torch.from_numpy(image), str(folder / f"{i:05d}.png"))
    return root


@pytest.fixture
def skip_cifar_md5(monkeypatch):
    """torchvision checks every CIFAR file's md5 against the real data set's: the one check a test
    with tiny fixtures must skip (the files still have to exist)."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))


DATA_SOURCES = ("cifar10", "cifar100", "imagefolder", "synthetic")


@pytest.fixture(scope="session")
def source_trees(tmp_path_factory):
    """One tiny tree per on-disk source, written once per test process."""
    root = tmp_path_factory.mktemp("sources")
    return {
        "cifar10": write_cifar(root / "cifar10", "cifar10"),
        "cifar100": write_cifar(root / "cifar100", "cifar100"),
        "imagefolder": write_imagefolder(root / "imagefolder"),
    }


@pytest.fixture(params=DATA_SOURCES)
def data_source(request, source_trees, skip_cifar_md5, tmp_path):
    """Overrides that put a TINY run on one data source (256 training, 128 test images each)."""
    name = request.param
    if name == "synthetic":
        return ["data=synthetic", "data.n_train=256", "data.n_test=128"]
    extra = ["data.download=false"] if name.startswith("cifar") else [f"data.cache_dir={tmp_path / 'cache'}"]
    return [f"data={name}", f"data.root={source_trees[name]}", *extra]


def tiny_on(source: list[str], *overrides: str) -> list[str]:
    """TINY with its synthetic data replaced by `source` (a `data_source` value)."""
    return [o for o in TINY if not o.startswith("data.")] + list(source) + list(overrides)


class SigtermAtStep(pl.Callback):
    """Sends this process SIGTERM after training step `step`, as a scheduler preempting the job does.
    From the command line: +callbacks.term._target_=conftest.SigtermAtStep +callbacks.term.step=6"""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            import signal

            os.kill(os.getpid(), signal.SIGTERM)
