"""docs/architecture.md is the map of the code: every module it (or another page of the docs, or the
README) names exists, and it names every package of sam_lightning/ (and every module outside them).

A module is named as a path (`sam_lightning/run/results.py`, `sam_lightning/variants/`) or dotted
(`sam_lightning.run.results`, `sam_lightning.variants.SAM`: a name defined in the module counts).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "sam_lightning"
MAP = ROOT / "docs" / "architecture.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PATH = re.compile(r"(?<![\w/.])sam_lightning/[\w/]*\w(?:\.py)?")
DOTTED = re.compile(r"(?<![\w/.])sam_lightning(?:\.\w+)+")


def packages() -> set[str]:
    """Every package below sam_lightning/, dotted (sam_lightning.training.callbacks, ...)."""
    return {".".join(init.parent.relative_to(ROOT).parts) for init in PACKAGE.rglob("__init__.py")} - {"sam_lightning"}


@cache
def defined_names(path: Path) -> frozenset[str]:
    """The names a module defines or imports at its top level."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(names)


def module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for file in (base.with_suffix(".py"), base / "__init__.py"):
        if file.is_file():
            return file
    return None


def resolves(dotted: str) -> bool:
    """`dotted` is a module or package, or a name defined in one (its longest module prefix)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        file = module_file(".".join(parts[:i]))
        if file is not None:
            return i == len(parts) or parts[i] in defined_names(file)
    return False


def references(path: Path) -> tuple[list[str], list[str]]:
    """The paths and the dotted names of sam_lightning modules that a page names."""
    text = path.read_text()
    return PATH.findall(text), DOTTED.findall(text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_named_exists(page):
    paths, dotted = references(page)
    assert not [p for p in paths if not (ROOT / p).exists()], f"{page.name} names paths that do not exist"
    assert not [d for d in dotted if not resolves(d)], f"{page.name} names modules that do not exist"


def test_the_map_names_every_package():
    paths, dotted = references(MAP)
    named = set(dotted) | {".".join(Path(p).parts) for p in paths if (ROOT / p).is_dir()}
    assert not packages() - named, f"docs/architecture.md does not name these packages: {sorted(packages() - named)}"
    loose = {str(p.relative_to(ROOT)) for p in PACKAGE.glob("*.py")} - {"sam_lightning/__init__.py"}
    assert not loose - set(paths), f"docs/architecture.md does not name these modules: {sorted(loose - set(paths))}"
