"""print_config=true: the composed config as a rich tree on the console when a run starts.

One branch per section (data, model, method, ... then the top-level settings), each the section's
YAML, resolved as the run reads it (as composed when an interpolation cannot be resolved). The
same config is saved in every run folder anyway: .hydra/config.yaml as composed, and results.json's
`config` resolved.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

ORDER = ("data", "model", "method", "optim", "trainer", "callbacks", "logger", "checkpoint", "paths")


def _yaml(node) -> str:
    try:
        return OmegaConf.to_yaml(node, resolve=True).rstrip()
    except Exception:  # noqa: BLE001 - shown as composed; the run itself reports the bad interpolation
        return OmegaConf.to_yaml(node, resolve=False).rstrip()


def config_tree(cfg: DictConfig) -> tuple[Tree, int]:
    """The tree, and the width its longest line needs (rich crops lines at the console's width)."""
    tree = Tree("config", guide_style="dim")
    widest = 0
    nested = [k for k, v in cfg.items_ex(resolve=False) if OmegaConf.is_config(v)]
    sections = [k for k in ORDER if k in nested] + [k for k in nested if k not in ORDER]
    rest = OmegaConf.masked_copy(cfg, [k for k in cfg if k not in sections])
    branches = [(key, cfg[key]) for key in sections] + ([("top level", rest)] if len(rest) else [])
    for name, node in branches:
        text = _yaml(node)
        widest = max([widest, *(len(line) for line in text.splitlines())])
        tree.add(f"[bold]{name}[/bold]").add(Syntax(text, "yaml", theme="ansi_dark"))
    return tree, widest + 8  # the tree's guides


def print_config_tree(cfg: DictConfig) -> None:
    tree, width = config_tree(cfg)
    console = Console()
    console.width = max(console.width, width)  # whole lines, also when the output is a log file
    console.print(tree)
