"""The GPU path end to end in one command that leaves a JSON report. Hydra config: conf/bench/gpu_check.yaml.

    make gpu-check                                    # .venv/bin/python bench/gpu_check.py
    OUT=<folder> make gpu-check                       # the report in <folder>/report.json
    .venv/bin/python bench/gpu_check.py steps=[train,sharpness] profile=cpu

Runs the project's own commands as child processes, so that what is checked is the path a user takes,
in this order, each step timed:

  train      train.py on trainer=gpu (the README's main command), 2 epochs of a width-64 ResNet-18:
             ERM, SAM (m = batch) and m-SAM (m = 4, vectorized engine), in bf16-mixed and in float32;
             the epochs' training times, the peak GPU memory and the final test error (results.json);
  resume     exact resume on the device: an uninterrupted SAM run that keeps its epoch-1 checkpoint, and
             a new process that resumes from that checkpoint (its log must say it loaded it); their
             final weights compared tensor by tensor, under trainer.deterministic=true and
             trainer.benchmark=false;
  bench      bench/step_time.py preset=gpu without torch.compile, at one batch size: ms/step and each
             step's share of the machine's matmul rate, as the bench measures them;
  ddp        train.py trainer=ddp on every visible GPU (skipped with fewer than two, and said so);
  sharpness  python -m sam_lightning.analysis.sharpness device=auto on step train's SAM checkpoint.

A failed command fails its step, with the command's error line, and the check goes on. report.json is
rewritten (atomically) as each run and each step ends, so a check cut short still leaves what it did;
every command's output is in logs/. Each step has a time budget (budget_s): a command still running
at its step's deadline is stopped and the step fails as timed out. On a machine without CUDA the
same steps run shrunk (profile=cpu: width 8, 256 images, float32) so that CI runs them.
Exit status: 0 when no step failed, 1 when one did, 2 for a bad setting of this command.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sam_lightning.entry import fail, run_command  # noqa: E402
from sam_lightning.run.jsonio import RESULTS_FILE, atomic_write_json  # noqa: E402
from sam_lightning.settings.config import ConfigError  # noqa: E402
from sam_lightning.settings.threads import cpu_name  # noqa: E402

STEPS = ("train", "resume", "bench", "ddp", "sharpness")
PROFILES = ("gpu", "cpu")
# Step train's runs: name -> (what the report calls it, train.py overrides).
METHODS = {
    "erm": ("ERM", ["method=erm"]),
    "sam": ("SAM (m = batch)", ["method=sam"]),
    "msam": ("m-SAM (m = 4, vmap)", ["method=sam_m4", "method.engine=vmap"]),
}
# What CUDA allows of determinism: Lightning's deterministic=true sets torch.use_deterministic_algorithms
# (deterministic cuDNN and scatter kernels, an error for an op that has none) and CUBLAS_WORKSPACE_CONFIG;
# benchmark=false keeps cuDNN from choosing its algorithms by timing them, run by run.
DETERMINISTIC = ["trainer.deterministic=true", "trainer.benchmark=false"]
# After SIGTERM at a deadline: train.py ends the step in progress, saves last.ckpt and results.json.
STOP_GRACE_S = 20
REPORT = "report.json"


class Report:
    """report.json: the machine, the settings and one entry per step, rewritten as each run and step ends."""

    def __init__(self, folder: Path, header: dict) -> None:
        self.path = folder / REPORT
        self.payload = {**header, "status": "running", "steps": []}
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, self.payload)

    def start(self, name: str) -> dict:
        entry = {"step": name, "status": "running", "started": now()}
        self.payload["steps"].append(entry)
        self.save()
        return entry


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


# -- child processes ----------------------------------------------------------------------------------
def run_child(args: list[str], log: Path, deadline: float) -> dict:
    """`python ARGS` from the repository root, its output in `log`; stopped at `deadline` (time.monotonic).
    Returns the command, its exit status, seconds and, when it did not succeed, its error line."""
    command = [sys.executable, *args]
    entry = {"command": shlex.join(command), "log": str(log)}
    left = deadline - time.monotonic()
    if left <= 0:
        return {**entry, "exit_code": None, "seconds": 0.0, "error": "not started: the step's time budget is spent"}
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "w") as out:
        # its own process group: a DDP run's workers stop with it
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            stop(proc)
            seconds = round(time.monotonic() - started, 1)
            return {
                **entry,
                "exit_code": proc.returncode,
                "seconds": seconds,
                "timed_out": True,
                "error": f"timed out: stopped after {seconds:.0f} s at the step's deadline (budget_s)",
            }
        except BaseException:  # the check itself stopped (Ctrl-C, SIGTERM): its child goes too
            stop(proc)
            raise
    entry.update(exit_code=code, seconds=round(time.monotonic() - started, 1))
    if code != 0:
        entry["error"] = error_line(log, code)
    return entry


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's process group (train.py then saves and records `preempted`), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def error_line(log: Path, code: int) -> str:
    """The command's own `error:` line (every entry point's one-line errors), else its last line (a
    traceback's exception), with the exit status."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    last = errors[-1] if errors else (lines[-1] if lines else "no output")
    return f"{last} (exit status {code})"


# -- the settings -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    trainer: str
    n_train: int
    n_test: int
    width: int
    epochs: int
    precisions: tuple[str, ...]
    bench: tuple[str, ...]
    sharpness: tuple[str, ...]


def _strings(cfg: DictConfig, key: str) -> tuple[str, ...]:
    values = OmegaConf.select(cfg, key)
    if values is None:
        return ()
    if not OmegaConf.is_list(values) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{key}={values!r}: must be a list of overrides, e.g. {key}='[key=value]'")
    return tuple(values)


def _positive(cfg: DictConfig, key: str) -> int:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key}={value!r}: must be an integer >= 1")
    return value


def choose_profile(cfg: DictConfig) -> tuple[str, Profile]:
    name = cfg.profile
    if name == "auto":
        name = "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ConfigError(f"profile={cfg.profile!r}: must be auto, gpu or cpu")
    if name == "gpu" and not torch.cuda.is_available():
        raise ConfigError("profile=gpu: no CUDA device here; use profile=cpu (or auto)")
    key = f"profiles.{name}"
    if OmegaConf.select(cfg, key) is None:
        raise ConfigError(f"{key} is missing")
    precisions = _strings(cfg, f"{key}.precisions")
    if not precisions:
        raise ConfigError(f"{key}.precisions: give at least one, e.g. [bf16-mixed,32-true]")
    return name, Profile(
        trainer=str(OmegaConf.select(cfg, f"{key}.trainer")),
        precisions=precisions,
        bench=_strings(cfg, f"{key}.bench"),
        sharpness=_strings(cfg, f"{key}.sharpness"),
        **{k: _positive(cfg, f"{key}.{k}") for k in ("n_train", "n_test", "width", "epochs")},
    )


def data_overrides(cfg: DictConfig, profile: Profile) -> list[str]:
    """train.py's data overrides: synthetic images at the profile's size, or a real set from data_root."""
    name, root = cfg.data, cfg.data_root
    options = sorted(p.stem for p in (ROOT / "conf" / "train" / "data").glob("*.yaml"))
    if name not in options:
        raise ConfigError(f"data={name!r}: not one of {', '.join(options)}")
    if name == "synthetic":
        if root is not None:
            raise ConfigError(f"data_root={root}: synthetic images are generated; name the set, e.g. data=cifar10")
        return ["data=synthetic", f"data.n_train={profile.n_train}", f"data.n_test={profile.n_test}"]
    if root is None:
        raise ConfigError(f"data={name} needs data_root=<its folder>: the check downloads nothing")
    folder = Path(hydra.utils.to_absolute_path(str(root)))
    if not folder.is_dir():
        raise ConfigError(f"data_root={root}: no such folder")
    return [f"data={name}", f"data.root={folder}", "data.download=false"]


def check_options(cfg: DictConfig) -> tuple[str, Profile, list[str], dict, list[str], Path]:
    """Every setting checked before anything runs (ConfigError, one line)."""
    steps = _strings(cfg, "steps")
    for step in steps:
        if step not in STEPS:
            raise ConfigError(f"steps: {step!r} is not one of {', '.join(STEPS)}")
    if not steps:
        raise ConfigError(f"steps=[]: give at least one of {', '.join(STEPS)}")
    budget = {}
    for step in STEPS:
        budget[step] = _positive(cfg, f"budget_s.{step}")
    for key in ("train_overrides", "bench_overrides", "sharpness_overrides"):
        _strings(cfg, key)
    name, profile = choose_profile(cfg)
    data = data_overrides(cfg, profile)
    if cfg.out is None:
        out = ROOT / "outputs" / "gpu_check" / datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    else:
        out = Path(hydra.utils.to_absolute_path(str(cfg.out)))
    if (out / REPORT).exists():
        raise ConfigError(f"out={out} already holds a report ({REPORT}); choose another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"out={out}: the folder cannot be created ({err.strerror or err})") from err
    return name, profile, [s for s in STEPS if s in steps], budget, data, out


def machine() -> dict:
    """What made the numbers: the hardware and the versions. The GPUs as nvidia-smi lists them, which
    also gives the driver and keeps this process off the GPUs the steps measure."""
    info = {
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,  # the CUDA torch was built with
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "gpus": [],
    }
    if torch.cuda.is_available():
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        try:
            lines = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
            fields = [[f.strip() for f in line.split(",")] for line in lines if line.strip()]
            info["gpus"] = [{"name": f[0], "memory": f[1], "driver": f[2]} for f in fields if len(f) == 3]
        except (OSError, subprocess.SubprocessError):  # no nvidia-smi: torch's names, which start CUDA here
            info["gpus"] = [{"name": torch.cuda.get_device_name(i)} for i in range(torch.cuda.device_count())]
    return info


# -- the check ----------------------------------------------------------------------------------------
class Check:
    def __init__(self, cfg: DictConfig, profile_name: str, profile: Profile, data: list[str], out: Path) -> None:
        self.cfg, self.profile, self.data, self.out = cfg, profile, data, out
        self.profile_name = profile_name
        self.sam_checkpoint: Path | None = None  # step train's SAM run, for step sharpness
        self.report: Report | None = None
        self.deadline = 0.0

    def train_args(self, run_dir: Path, method: list[str], precision: str, *more: str, trainer: str | None = None):
        p = self.profile
        return [
            "train.py",
            f"trainer={trainer or p.trainer}",
            *self.data,
            f"model.width={p.width}",
            f"trainer.max_epochs={p.epochs}",
            *method,
            f"trainer.precision={precision}",
            "logger=csv",  # no W&B: nothing leaves the machine
            "trainer.enable_progress_bar=false",
            *more,
            *_strings(self.cfg, "train_overrides"),
            f"hydra.run.dir={run_dir}",
        ]

    def train_run(self, name: str, args: list[str], run_dir: Path) -> dict:
        """One train.py run and what its results.json and train.log say."""
        entry = {"name": name, **run_child(args, self.out / "logs" / f"{run_dir.name}.log", self.deadline)}
        entry["run_dir"] = str(run_dir)
        results = read_json(run_dir / RESULTS_FILE)
        if results:
            history = results.get("history") or []
            entry.update(
                status=results.get("status"),
                epochs_done=results.get("epochs_done"),
                # the run's own clock (time/epoch_s): each epoch's training, its evaluation left out
                epoch_time_s=[None if h.get("time/epoch_s") is None else round(h["time/epoch_s"], 3) for h in history],
                peak_gpu_memory_mb=results.get("peak_gpu_memory_mb"),
                final_test_error=results.get("final_test_error"),
                precision=(results.get("config") or {}).get("trainer", {}).get("precision"),
            )
        entry["log_lines"] = chosen_log_lines(run_dir / "train.log")
        if entry["exit_code"] == 0 and (not results or results.get("status") != "finished"):
            entry["error"] = f"exit status 0 but results.json says {results.get('status') if results else 'nothing'}"
        return entry

    # -- the steps --
    def step_train(self, entry: dict) -> None:
        runs = entry["runs"] = []
        for precision in self.profile.precisions:
            for key, (label, method) in METHODS.items():
                run_dir = self.out / "train" / f"{key}_{precision}"
                run = self.train_run(f"{label}, {precision}", self.train_args(run_dir, method, precision), run_dir)
                runs.append(run)
                last = run_dir / "checkpoints" / "last.ckpt"
                if key == "sam" and self.sam_checkpoint is None and "error" not in run and last.is_file():
                    self.sam_checkpoint = last
                self.report.save()
        failed = [r for r in runs if "error" in r]
        if failed:
            entry["error"] = (
                f"{len(failed)} of {len(runs)} runs failed; first: {failed[0]['name']}: {failed[0]['error']}"
            )

    def step_resume(self, entry: dict) -> None:
        precision = self.profile.precisions[0]
        entry["flags"] = DETERMINISTIC
        entry["precision"] = precision
        method = METHODS["sam"][1]
        keep = "checkpoint.every_n_epochs=1"  # epoch000.ckpt: the state after epoch 1, kept
        whole_dir, resumed_dir = self.out / "resume" / "whole", self.out / "resume" / "resumed"
        whole = self.train_run(
            "uninterrupted", self.train_args(whole_dir, method, precision, *DETERMINISTIC, keep), whole_dir
        )
        entry["runs"] = [whole]
        self.report.save()
        first = whole_dir / "checkpoints" / "epoch000.ckpt"
        if "error" in whole or not first.is_file():
            entry["error"] = f"the uninterrupted run failed: {whole.get('error', f'no {first.name}')}"
            return
        # A new process from the checkpoint of epoch 1: everything the second epoch depends on comes
        # from that file (weights, momentum, schedule, random states, the data order).
        args = self.train_args(resumed_dir, method, precision, *DETERMINISTIC, keep, f"ckpt_path={first}")
        resumed = self.train_run("resumed after epoch 1", args, resumed_dir)
        entry["runs"].append(resumed)
        if "error" in resumed:
            entry["error"] = f"the resumed run failed: {resumed['error']}"
            return
        # A run that ignored its checkpoint would train both epochs from the same seed and end with
        # the same weights: that it loaded the checkpoint is checked apart.
        if not any(line.startswith(RESTORED) for line in resumed["log_lines"]):
            entry["error"] = f"the resumed run's train.log does not say it loaded {first.name} ({RESTORED!r})"
            return
        entry["weights"] = compare_weights(
            whole_dir / "checkpoints" / "last.ckpt", resumed_dir / "checkpoints" / "last.ckpt"
        )
        w = entry["weights"]
        if w["tensors_differing"] or w["global_steps"][0] != w["global_steps"][1]:
            entry["error"] = (
                f"the resumed run ends with other weights: {w['tensors_differing']} of {w['tensors']} tensors differ "
                f"(max |difference| {w['max_abs_difference']:.3g}), steps {w['global_steps']}"
            )

    def step_bench(self, entry: dict) -> None:
        result_file = self.out / "bench" / "step_time.json"
        args = ["bench/step_time.py", *self.profile.bench, *_strings(self.cfg, "bench_overrides"), f"out={result_file}"]
        entry.update(run_child(args, self.out / "logs" / "bench.log", self.deadline))
        bench = read_json(result_file) if entry["exit_code"] == 0 else None
        if bench is None:
            entry.setdefault("error", f"exit status 0 but no {result_file.name}")
            return
        entry["hardware"] = bench.get("hardware")
        # the bench's own measure of the machine: a large torch.mm per precision
        rates = bench.get("matmul_flops_per_s") or {}
        entry["matmul_tflops"] = {k: round(v / 1e12, 3) for k, v in rates.items()}
        entry["rows"] = bench_rows(bench)
        if not rates:
            entry["error"] = "the bench reported no matmul rate (matmul_flops_per_s)"

    def step_ddp(self, entry: dict) -> None:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus < 2:
            entry["status"] = "skipped"
            entry["reason"] = f"{gpus} GPU{'' if gpus == 1 else 's'} visible: DDP needs two or more"
            return
        run_dir = self.out / "ddp" / "sam"
        precision = self.profile.precisions[0]
        args = self.train_args(run_dir, METHODS["sam"][1], precision, trainer="ddp")  # trainer=ddp: every GPU
        run = self.train_run(f"SAM (m = batch per device), {precision}, {gpus} GPUs", args, run_dir)
        entry.update(gpus=gpus, runs=[run])
        if "error" in run:
            entry["error"] = run["error"]

    def step_sharpness(self, entry: dict) -> None:
        if "train" not in self.steps:
            entry["status"] = "skipped"
            entry["reason"] = "needs step train's SAM checkpoint, and steps leaves train out"
            return
        if self.sam_checkpoint is None:
            entry["error"] = "no checkpoint: step train's SAM runs did not finish"
            return
        out_dir = self.out / "sharpness"
        args = [
            "-m",
            "sam_lightning.analysis.sharpness",
            f"ckpt={self.sam_checkpoint}",
            "device=auto",
            "progress=false",
            *self.profile.sharpness,
            *_strings(self.cfg, "sharpness_overrides"),
            f"out_dir={out_dir}",
        ]
        entry.update(run_child(args, self.out / "logs" / "sharpness.log", self.deadline))
        result = read_json(out_dir / "sharpness.json")
        if result:
            entry["device"] = result.get("settings", {}).get("device")
            entry["results"] = [
                {k: r.get(k) for k in ("checkpoint", "bn", "m", "rho", "sharpness", "one_step_sharpness")}
                for r in result.get("results", [])
            ]
        elif "error" not in entry:
            entry["error"] = "exit status 0 but no sharpness.json"

    def run(self, steps: list[str], budget: dict) -> list[str]:
        """Every step in order; returns the steps that failed."""
        self.steps = steps
        header = {
            "command": shlex.join([sys.executable, *sys.argv]),
            "profile": self.profile_name,
            "shrunk": self.profile_name == "cpu",
            "machine": machine(),
            "settings": {
                "profile": asdict(self.profile),
                "data": self.data,
                "steps": steps,
                "budget_s": {s: budget[s] for s in steps},
                "train_overrides": list(_strings(self.cfg, "train_overrides")),
            },
            "started": now(),
        }
        self.report = Report(self.out, header)
        print(f"gpu check ({self.profile_name} profile), report: {self.report.path}", flush=True)
        started = self.deadline = time.monotonic()
        for step in steps:
            self.deadline += budget[step]  # what earlier steps left unused passes on
            entry = self.report.start(step)
            t0 = time.monotonic()
            try:
                getattr(self, f"step_{step}")(entry)
            except Exception as err:  # noqa: BLE001 - a step that breaks is a result; the next steps still run
                entry["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            except BaseException:
                entry.update(status="interrupted", seconds=round(time.monotonic() - t0, 1))
                self.report.payload["status"] = "interrupted"
                self.report.save()
                raise
            if entry["status"] == "running":
                entry["status"] = "failed" if "error" in entry else "ok"
            entry["seconds"] = round(time.monotonic() - t0, 1)
            self.report.save()
            print(step_line(entry), flush=True)
        failed = [e["step"] for e in self.report.payload["steps"] if e["status"] == "failed"]
        self.report.payload.update(
            status="finished", finished=now(), seconds=round(time.monotonic() - started, 1), failed_steps=failed
        )
        self.report.save()
        if table := train_table(self.report.payload):
            print(table, flush=True)
        print(f"report: {self.report.path}", flush=True)
        return failed


# -- what the steps measure ---------------------------------------------------------------------------
def read_json(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


RESTORED = "Restored all states from the checkpoint"  # Lightning's line once a resume has loaded it


def chosen_log_lines(log: Path) -> list[str]:
    """The lines of train.log that say what the run chose on this machine (precision, memory layout and
    compile; the m-SAM engine) and, resuming, that the checkpoint was loaded."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    messages = [line.split(" - ", 1)[1] for line in lines if " - " in line]
    return [m for m in messages if m.startswith(("precision ", "m-SAM engine:", RESTORED))]


def compare_weights(a: Path, b: Path) -> dict:
    """Tensor by tensor, the model weights and buffers of two checkpoints."""
    x = torch.load(a, map_location="cpu", weights_only=True)
    y = torch.load(b, map_location="cpu", weights_only=True)
    sa, sb = x["state_dict"], y["state_dict"]
    if sa.keys() != sb.keys():
        raise ValueError(f"the checkpoints hold other tensors: {sorted(set(sa) ^ set(sb))[:3]}")
    differing, largest = [], 0.0
    for key in sa:
        if not torch.equal(sa[key], sb[key]):
            differing.append(key)
            if sa[key].is_floating_point():
                largest = max(largest, (sa[key].double() - sb[key].double()).abs().max().item())
    return {
        "tensors": len(sa),
        "tensors_differing": len(differing),
        "max_abs_difference": largest,
        "differing": differing[:10],
        "global_steps": [x.get("global_step"), y.get("global_step")],
    }


def bench_rows(bench: dict) -> list[dict]:
    """The bench's step rows, with what the check reports of each: ms/step, the ratio to SAM (m = batch)
    and the share of the matmul rate of its precision that the bench measured."""
    keys = ("batch", "norm", "precision", "channels_last", "method", "engine", "ms", "vs_sam", "of_matmul_rate")
    return [
        {k: row.get(k) for k in keys} | ({"error": row["error"]} if row.get("error") else {})
        for row in bench.get("steps", [])
    ]


def step_line(entry: dict) -> str:
    """One console line per step as it ends."""
    what = entry.get("reason") or entry.get("error") or ""
    return f"{entry['step']}: {entry['status']} in {entry.get('seconds', 0):.0f} s" + (f": {what}" if what else "")


def fmt(value, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def train_table(payload: dict) -> str:
    """Step train's runs as a Markdown table (README, GPU), with the machine that made them."""
    step = next((s for s in payload["steps"] if s["step"] == "train"), None)
    if not step or not step.get("runs"):
        return ""
    m = payload["machine"]
    where = f"{m['gpus'][0]['name']}, CUDA {m['torch_cuda']}" if m["gpus"] else f"{m['cpu']} (no GPU)"
    lines = [
        f"\n{where}, torch {m['torch']}; profile {payload['profile']}",
        "| run | epoch s (training) | peak GPU MB | final test error % | status |",
        "|---|---|---|---|---|",
    ]
    for r in step["runs"]:
        times = ", ".join(fmt(t, ".1f") for t in r.get("epoch_time_s") or []) or "-"
        lines.append(
            f"| {r['name']} | {times} | {fmt(r.get('peak_gpu_memory_mb'), '.0f')} | "
            f"{fmt(r.get('final_test_error'), '.2f', 100)} | {r.get('status') or 'failed'} |"
        )
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf/bench", config_name="gpu_check")
def main(cfg: DictConfig) -> None:
    try:
        outcome = run_command(check, cfg)
    except KeyboardInterrupt:
        fail("interrupted: report.json holds the steps done and the one interrupted")
    failed, report = outcome or ([], None)  # None: a multirun job's failure, logged by run_command
    if failed:
        fail(f"step(s) failed: {', '.join(failed)} (their errors are in {report})")


def check(cfg: DictConfig) -> tuple[list[str], Path]:
    profile_name, profile, steps, budget, data, out = check_options(cfg)
    # SIGTERM (a scheduler, a timeout) ends the check as Ctrl-C does: the step in progress is marked
    # interrupted in the report and the command running is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return Check(cfg, profile_name, profile, data, out).run(steps, budget), out / REPORT


if __name__ == "__main__":
    main()
