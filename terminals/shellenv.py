"""The environment of an instance's terminal: the one its WebUI gets
(instances.launcher.child_environment: AiKore's secrets and its own virtualenv already removed),
with the instance's Python environment activated, so `python` and `pip` in the shell are the
instance's. Standard library only: the tmux server's launcher (terminals/launcher.py) imports it
before Django."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping


def python_env_at(env_dir: str) -> str | None:
    """env_dir (Instance.env_dir) if a Python environment was built there (a venv's bin/python)."""
    return env_dir if os.path.lexists(os.path.join(env_dir, "bin", "python")) else None


def shell_environment(env: Mapping[str, str], *, python_env: str | None) -> dict[str, str]:
    """env: what child_environment() gave; python_env: the instance's venv, or None."""
    out = dict(env)
    if python_env:
        out["VIRTUAL_ENV"] = python_env
        out["PATH"] = os.pathsep.join([os.path.join(python_env, "bin"), *filter(None, out.get("PATH", "").split(os.pathsep))])
    # UTF-8 everywhere (the browser's terminal is UTF-8); Debian always has the C.UTF-8 locale.
    effective = out.get("LC_ALL") or out.get("LC_CTYPE") or out.get("LANG") or ""
    if not re.search(r"utf-?8", effective, re.IGNORECASE):
        out.pop("LC_ALL", None)
        out["LC_CTYPE"] = "C.UTF-8"
        out.setdefault("LANG", "C.UTF-8")
    for name in ("TMUX", "TMUX_PANE"):
        out.pop(name, None)
    return out
