"""Pick the W&B mode so that a run never prompts for a login and never hangs on a dead network.

mode=auto: online when an API key is known (WANDB_API_KEY or ~/.netrc) and the W&B server answers
within two seconds; offline otherwise, with one line saying why and how to upload later.
"""

from __future__ import annotations

import netrc
import os
import socket
from urllib.parse import urlparse

MODES = ("auto", "online", "offline", "disabled")


def _host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"


def api_key_known(host: str | None = None) -> bool:
    """Whether W&B has a key for `host` (the W&B server): WANDB_API_KEY, or the netrc file (NETRC or ~/.netrc)."""
    host = host or _host()
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(os.environ.get("NETRC") or None).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_mode(requested: str = "auto") -> tuple[str, str | None]:
    """Returns (mode, why) where `why` explains a fallback to offline (None when there is none)."""
    if requested not in MODES:
        raise ValueError(f"logger.wandb.mode must be one of {', '.join(MODES)}, got {requested!r}")
    env = os.environ.get("WANDB_MODE")
    if requested == "auto" and env in ("online", "offline", "disabled", "dryrun"):
        return ("offline" if env == "dryrun" else env), None
    if requested != "auto":
        return requested, None
    host = _host()
    if not api_key_known(host):
        return "offline", "no W&B API key (WANDB_API_KEY or ~/.netrc)"
    if not _reachable(host):
        return "offline", f"{host} is unreachable"
    return "online", None
