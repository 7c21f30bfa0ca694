"""`make bench` and `make bench-gpu` keep working: the benchmark runs on a tiny model and writes its
table (in this process, as the command line runs it), and says when a loaded machine made it."""

from __future__ import annotations

import json

import pytest
from helpers import run_entry

TINY = ["width=4", "batch_sizes=[16]", "m=[4]", "steps=1", "rounds=1", "threads=1"]
SETTING = ("batch", "norm", "precision", "channels_last", "compile")


@pytest.mark.slow
def test_bench_runs_and_writes_its_table(tmp_path, capfd, monkeypatch):
    out = tmp_path / "bench.json"
    assert run_entry("bench", [*TINY, f"out={out}"], monkeypatch) == 0, capfd.readouterr().err[-2000:]
    result = json.loads(out.read_text())
    methods = {(r["norm"], r["method"], r["engine"]) for r in result["steps"]}
    assert methods == {
        (n, m, e)
        for n in ("batch", "group")
        for m, e in [("ERM", "-"), ("SAM (m = batch)", "-"), ("m-SAM (m = 4)", "loop"), ("m-SAM (m = 4)", "vmap")]
    }
    rates = result["matmul_flops_per_s"]
    assert set(rates) == {"fp32", "bf16"} and all(v > 0 for v in rates.values())
    for row in result["steps"]:  # each time over SAM's (m = batch) in the same setting
        sam = next(
            r for r in result["steps"] if r["method"] == "SAM (m = batch)" and all(r[k] == row[k] for k in SETTING)
        )
        assert row["vs_sam"] == pytest.approx(row["ms"] / sam["ms"])
        # ... over float32's in the default layout, same method and engine
        fp32 = next(
            r
            for r in result["steps"]
            if (r["precision"], r["channels_last"]) == ("fp32", False)
            and all(r[k] == row[k] for k in ("batch", "norm", "compile", "method", "engine"))
        )
        assert row["vs_fp32"] == pytest.approx(row["ms"] / fp32["ms"])
        # the FLOPs of the method's passes (ERM 1, the others 2) per second, over the precision's matmul rate
        assert row["flops"] == (1 if row["method"] == "ERM" else 2) * next(
            r["flops"] for r in result["steps"] if r["method"] == "ERM" and r["norm"] == row["norm"]
        )
        assert row["of_matmul_rate"] == pytest.approx(row["flops"] / (row["ms"] / 1000) / rates[row["precision"]])
    assert {(r["precision"], r["channels_last"]) for r in result["steps"]} == {
        (p, c) for p in ("fp32", "bf16") for c in (False, True)
    }
    loops = result["loops_ms"]
    assert loops["lightning/plain"] == pytest.approx(loops["lightning"] / loops["plain"])
    assert set(result["loader_batches_per_s"]) == {"DataLoader", "device-resident"}
    shown = capfd.readouterr().out
    assert "| m-SAM (m = 4) | vmap |" in shown and "matmul rate (torch.mm" in shown
    assert "| fp32 | fp32, channels_last | bf16 | bf16, channels_last |" in shown


def test_the_m_grid_preset_keeps_the_float32_m_table():
    from conftest import compose_config

    cfg = compose_config(["preset=m_grid"], config_name="bench", tree="bench")
    assert (list(cfg.m), list(cfg.batch_sizes), list(cfg.precisions)) == ([32, 8, 4], [128], ["fp32"])


@pytest.mark.slow
def test_gpu_preset_composes_and_runs_its_grid_on_the_cpu(tmp_path, capfd, monkeypatch):
    # The GPU preset's settings with a CPU and a tiny model: every row of its grid runs.
    out = tmp_path / "gpu.json"
    args = [
        "preset=gpu",
        "device=cpu",
        *TINY,
        "precisions=[fp32]",
        "compile=[false]",
        "loops=false",
        "loaders=false",
        f"out={out}",
    ]
    assert run_entry("bench", args, monkeypatch) == 0, capfd.readouterr().err[-2000:]
    rows = json.loads(out.read_text())["steps"]
    assert {r["channels_last"] for r in rows} == {False, True} and {r["norm"] for r in rows} == {"batch"}
    assert all(r["ms"] is not None for r in rows)


def _row(method: str, vs_sam: float, engine: str = "-", spread: float | None = 0.05) -> dict:
    return {
        "batch": 128,
        "norm": "batch",
        "precision": "fp32",
        "method": method,
        "engine": engine,
        "vs_sam": vs_sam,
        "spread": spread,
    }


QUIET = [
    _row("ERM", 0.48),
    _row("SAM (m = batch)", 1.0),
    _row("m-SAM (m = 4)", 3.3, "loop"),
    _row("m-SAM (m = 4)", 1.9, "vmap"),
]


@pytest.mark.parametrize(
    "rows,load,reason",
    [
        ([_row("ERM", 1.05), *QUIET[1:]], None, "SAM (m = batch) no costlier than ERM"),
        ([*QUIET[:3], _row("m-SAM (m = 4)", 0.7, "vmap")], None, "m-SAM (m = 4) vmap faster than SAM (m = batch)"),
        ([*QUIET[:3], _row("m-SAM (m = 4)", 1.9, "vmap", spread=0.35)], None, "rounds 35% apart (m-SAM (m = 4) vmap"),
        (QUIET, 7.9, "load average 7.9 on 2 CPUs"),
    ],
    ids=["sam_cheaper_than_erm", "msam_faster_than_sam", "rounds_apart", "load_above_the_cpus"],
)
def test_a_table_made_on_a_loaded_machine_ends_with_one_warning_line(rows, load, reason):
    from bench.step_time import load_warning

    warning = load_warning(rows, load, cpus=2)
    assert warning.startswith("warning: the machine looks loaded") and reason in warning and "\n" not in warning
    assert load_warning(QUIET, 1.5, cpus=2) is None and load_warning(QUIET, None, None) is None
