"""The import rules between the packages (docs/architecture.md, "Layers and import contracts").

The contracts themselves are [tool.importlinter] in pyproject.toml; `make lint` runs them, and so does
the first test here (the same command, in-process: no Python is started), so that `make test` and
`make test-fast` check them too. The other tests check what
import-linter cannot read: train.py is a script, not a package, and the command line is read through
sys.argv and hydra.main as well as argparse.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

PACKAGE = ROOT / "sam_lightning"
REPORTING = "sam_lightning.reporting"

# Modules that read the command line without being entry points, each with what it reads. An entry
# point belongs in the `command-line` contract's allowed_importers (pyproject.toml) instead.
NOT_ENTRY_POINTS_READING_ARGV = {
    "sam_lightning.run.naming": "command_line(): sys.argv[0], the script's name in the command that runs a job again",
}


def contracts() -> dict[str, dict]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return {c["id"]: c for c in tomllib.load(f)["tool"]["importlinter"]["contracts"]}


def entry_modules() -> set[str]:
    """The modules of the package that are entry points (or their shared code): the one list, in pyproject.toml."""
    return set(contracts()["command-line"]["allowed_importers"])


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every absolute import of a file (`from a.b import c` gives a.b and a.b.c: c may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def command_line_reads(path: Path) -> list[str]:
    """Where a file reads the command line: sys.argv, an argument parser, or hydra.main."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in {("sys", "argv"), ("hydra", "main")}:
                found.append(f"l.{node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            modules = names if isinstance(node, ast.Import) else [node.module or ""]
            parsers = [m for m in modules if m.split(".")[0] in {"argparse", "optparse", "getopt", "click", "typer"}]
            found += [f"l.{node.lineno}: import {m}" for m in parsers]
            if isinstance(node, ast.ImportFrom) and (node.module, "argv") in {("sys", n) for n in names}:
                found.append(f"l.{node.lineno}: from sys import argv")
            if isinstance(node, ast.ImportFrom) and node.module == "hydra" and "main" in names:
                found.append(f"l.{node.lineno}: from hydra import main")
    return found


def test_import_contracts_hold(monkeypatch):
    """lint-imports, as `make lint` runs it (its command, in this process): every contract of pyproject.toml is kept."""
    from click.testing import CliRunner
    from importlinter.cli import lint_imports_command

    monkeypatch.chdir(ROOT)  # where lint-imports finds pyproject.toml
    result = CliRunner().invoke(lint_imports_command, ["--no-cache", "--no-logo"])
    assert result.exit_code == 0, result.output
    assert f"{len(contracts())} kept, 0 broken" in result.output, result.output


def test_train_py_never_imports_reporting():
    """train.py, like sam_lightning.training, reaches no reporting module, directly or through what it imports."""
    import grimp

    imported = {m for m in imported_modules(ROOT / "train.py") if m.split(".")[0] == "sam_lightning"}
    assert imported, "train.py imports no sam_lightning module: the parse found nothing"
    assert not {m for m in imported if m == REPORTING or m.startswith(REPORTING + ".")}
    graph = grimp.build_graph("sam_lightning", cache_dir=None)
    chains = {m: graph.find_shortest_chains(importer=m, imported=REPORTING) for m in sorted(imported & graph.modules)}
    assert not {m: c for m, c in chains.items() if c}, "train.py reaches sam_lightning.reporting"


def test_only_entry_points_read_the_command_line():
    """No module of the package reads sys.argv, parses arguments or runs hydra.main, except the entry points
    listed in the `command-line` contract (and the exceptions named above, each still needed)."""
    allowed = entry_modules()
    reads = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found = command_line_reads(path)
        if found:
            reads[module_name(path)] = found
    outside = {m: f for m, f in reads.items() if m not in allowed and m not in NOT_ENTRY_POINTS_READING_ARGV}
    assert not outside, f"only the entry points read the command line: {outside}"
    assert not allowed - set(reads), f"listed as entry points, but read no command line: {allowed - set(reads)}"
    stale = set(NOT_ENTRY_POINTS_READING_ARGV) - set(reads)
    assert not stale, f"read the command line no more: drop them from NOT_ENTRY_POINTS_READING_ARGV: {stale}"
