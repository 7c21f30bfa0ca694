"""The results committed under docs/results/ (results.json files only): each regime's criterion holds
in them, and sweep.py makes the document's tables from them."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT, compose_config

from sam_lightning.reporting.cli import main as sweep_main
from sam_lightning.run.results import current_keys
from sam_lightning.settings.criterion import Criterion

RESULTS = ROOT / "docs" / "results"


def runs_of(preset: str, method: str) -> list[dict]:
    runs = [current_keys(json.loads(p.read_text())) for p in sorted((RESULTS / preset).rglob("results.json"))]
    return [r for r in runs if r["status"] == "finished" and r["config"]["method"].get("name") == method]


@pytest.mark.parametrize("preset", ["laptop_sam_vs_erm", "laptop_label_noise"])
def test_each_regimes_erm_runs_meet_the_criterion_its_preset_states(preset):
    # The rule is read from the preset (its `criterion` node), the runs from the committed files: runs
    # made before the check was written into results.json are checked the same way.
    crit = Criterion.from_mapping(compose_config([f"experiment={preset}"]).criterion)
    runs = runs_of(preset, "erm")
    if not runs:
        pytest.skip(f"no committed {preset} runs")
    for run in runs:
        reached = crit.check(run["history"], run["config"]["trainer"]["max_epochs"])
        assert reached["met"], (run["config"]["seed"], reached)
        if "criterion" in run:  # what the run recorded when it ended is what the rule gives now
            assert run["criterion"] == reached


RUN_FOLDERS = sorted(p.name for p in RESULTS.iterdir() if any(p.rglob("results.json"))) if RESULTS.is_dir() else []


@pytest.mark.parametrize("preset", RUN_FOLDERS)
def test_every_committed_results_folder_sweeps_paired(preset, tmp_path, capsys):
    # A folder with ERM runs is paired on them; a figure's folder that pairs with another regime's ERM
    # (laptop_switch with regime A's) sweeps alone here and paired in the findings table.
    has_erm = any(r["status"] == "finished" for r in runs_of(preset, "erm"))
    paired = ["--paired", "seed", "--baseline", "erm"] if has_erm else []
    code = sweep_main([str(RESULTS / preset), *paired, "--no-plots", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert ("paired differences to erm" in out) == has_erm and "test error" in out


def test_the_findings_table_is_what_the_committed_results_give():
    # The table at the top of docs/reproduction.md: every number regenerated from docs/results/.
    from sam_lightning.reporting.findings import FINDINGS, document_block, findings_table, paired_row

    assert document_block(DOC.read_text()) == findings_table()
    figures = {f.figure for f in FINDINGS}
    for fig in ("Fig. 1", "Figs. 2, 3", "Fig. 4", "Fig. 8", "Fig. 9", "Fig. 10", "Fig. 11", "Fig. 12"):
        assert fig in figures, fig
    missing = [d for f in FINDINGS for d in f.folders if not (RESULTS / d).is_dir()]
    assert not missing, f"findings name folders that docs/results/ lacks: {missing}"
    # A row whose keys match no paired row (a key constant over its folders is no column) would read
    # "not run" beside committed runs.
    unmatched = [(f.figure, f.row) for f in FINDINGS if f.row and f.compute is None and paired_row(f) is None]
    assert not unmatched, f"findings rows that match no paired row of their folders: {unmatched}"


DOC = ROOT / "docs" / "reproduction.md"


def _paragraphs(lines: list[str]) -> list[list[str]]:
    paras, cur = [], []
    for line in [*lines, ""]:
        if line.strip():
            cur.append(line)
        elif cur:
            paras.append(cur)
            cur = []
    return paras


def _tables(lines: list[str]) -> list[list[str]]:
    """The aligned tables of sweep's output: paragraphs whose second line is the header rule."""
    return [p for p in _paragraphs(lines) if len(p) > 1 and p[1].startswith("---")]


def _documents_sweep_blocks() -> list[tuple[list[str], list[str], list[str]]]:
    """(result folders, sweep.py options, block lines) for each block of docs/reproduction.md that shows
    sweep's output: a whole output ("sweep: docs/results/<folder>[, docs/results/<folder> ...][, where
    ...]" first) or its tables alone ("method ..." first), whose folder, --metric, --where and --baseline
    (erm unless named) are the last ones the text names before it."""
    text = DOC.read_text()
    blocks, preset, options, pos, baseline, command = [], None, [], 0, "erm", None
    for m in re.finditer(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        before = text[pos : m.start()]
        pos = m.end()
        body = m.group(1).rstrip("\n").splitlines()
        if body and body[0].startswith("python sweep.py "):  # the command whose output the next block shows
            words = " ".join(body).replace("\\", " ").split()
            command = [w.removeprefix("docs/results/") for w in words if w.startswith("docs/results/")]
            command_where = [a for k, w in enumerate(words[:-1]) if w == "--where" for a in (w, words[k + 1])]
            if "--baseline" in words:
                baseline = words[words.index("--baseline") + 1]
            continue
        named = re.findall(r"sweep\.py docs/results/([\w/]+)([^`\n]*)", before)
        flags = re.findall(r"--metric (\w+)", before)
        baselines = re.findall(r"--baseline (\S+?)`", before)
        if baselines:
            baseline = baselines[-1]
        if named:
            preset, rest = named[-1]
            options = [arg for flag in re.findall(r"--(?:metric|where) \S+", rest) for arg in flag.split()]
        elif flags:
            options = ["--metric", flags[-1]]
        if body and body[0].startswith("sweep: docs/results/"):
            folders, _, where = body[0].removeprefix("sweep: ").partition(", where ")
            # The folders the command above names, so an output block left behind by its command fails.
            preset = command or [f.removeprefix("docs/results/") for f in folders.split(", ")]
            options = [arg for cond in where.split(" and ") if cond for arg in ("--where", cond)]
            options = command_where if command else options
            blocks.append((preset, [*options, "--baseline", baseline], body))
        elif body and body[0].startswith("method ") and preset:
            blocks.append(([preset] if isinstance(preset, str) else preset, [*options, "--baseline", baseline], body))
        baseline, command = "erm", None  # a block's baseline and command come just before it
    return blocks


def test_the_documents_tables_are_what_sweep_prints_from_the_committed_results(tmp_path, capsys):
    # Every table of docs/reproduction.md is regenerated here from docs/results/ and must match it
    # character for character: a run added without refreshing the document fails.
    blocks = _documents_sweep_blocks()
    if not blocks:
        pytest.skip("no sweep tables in docs/reproduction.md")
    assert {f for folders, _, _ in blocks for f in folders} >= {"laptop_sam_vs_erm", "laptop_label_noise"}
    for folders, options, body in blocks:
        argv = [*(str(RESULTS / f) for f in folders), "--paired", "seed", *options]
        assert sweep_main([*argv, "--no-plots", "--out", str(tmp_path)]) == 0
        printed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("wrote ")]
        if body[0].startswith("sweep: "):
            printed = [line.replace(str(RESULTS), "docs/results") for line in printed]
            assert body == _paragraph_lines(printed), (folders, options)
        else:
            assert _tables(body) == _tables(printed), (folders, options)


def _paragraph_lines(lines: list[str]) -> list[str]:
    """The lines without trailing blank ones (the document's block ends at its last line)."""
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def test_curves_are_titled_by_what_they_plot_whatever_the_tables_metric(monkeypatch, tmp_path):
    # --metric best with a validation split ranks by the test error at the best validation epoch; the
    # curves still plot the logged test and train error (and, with label noise, the fit of each label kind).
    import sam_lightning.reporting.plots as plots

    if not (RESULTS / "laptop_label_noise").is_dir():
        pytest.skip("no committed laptop_label_noise runs")
    titles = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi=110: titles.setdefault(path.name, fig) and path)
    assert sweep_main([str(RESULTS / "laptop_label_noise"), "--metric", "best", "--out", str(tmp_path)]) == 0
    curves = titles["test_error_curves.png"]
    assert curves.get_suptitle().startswith("Test and train error (%) over epochs")
    assert {ax.get_ylabel() for ax in curves.axes} >= {"flipped labels fitted (%)", "train error, clean labels (%)"}
