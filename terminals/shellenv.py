"""The environment of an instance's terminal: the one its WebUI gets
(instances.launcher.child_environment), with the instance's Python environment activated and
AiKore's own virtualenv taken off PATH, so `python` and `pip` in the shell are the instance's.
Standard library only: the tmux server's launcher (terminals/launcher.py) imports it before Django."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

# Where an instance keeps its Python environment, inside its directory ($INSTANCE_CONF_DIR/env).
PYTHON_ENV_DIRNAME = "env"


def python_env_of(instance_dir: str) -> str | None:
    """The instance's Python environment if it has one (a venv with bin/python)."""
    path = os.path.join(instance_dir, PYTHON_ENV_DIRNAME)
    return path if os.path.lexists(os.path.join(path, "bin", "python")) else None


def _same_dir(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def shell_environment(env: Mapping[str, str], *, python_env: str | None, aikore_bin: str) -> dict[str, str]:
    """env: what child_environment() gave; python_env: the instance's venv or None; aikore_bin: the
    bin directory of AiKore's own virtualenv (removed from PATH, its VIRTUAL_ENV dropped)."""
    out = dict(env)
    path = [p for p in out.get("PATH", "").split(os.pathsep) if p and not _same_dir(p, aikore_bin)]
    if out.get("VIRTUAL_ENV") and _same_dir(os.path.join(out["VIRTUAL_ENV"], "bin"), aikore_bin):
        del out["VIRTUAL_ENV"]
    if python_env:
        out["VIRTUAL_ENV"] = python_env
        path.insert(0, os.path.join(python_env, "bin"))
        out.pop("PYTHONHOME", None)
    out["PATH"] = os.pathsep.join(path) or os.defpath
    # UTF-8 everywhere (the browser's terminal is UTF-8); Debian always has the C.UTF-8 locale.
    effective = out.get("LC_ALL") or out.get("LC_CTYPE") or out.get("LANG") or ""
    if not re.search(r"utf-?8", effective, re.IGNORECASE):
        out.pop("LC_ALL", None)
        out["LC_CTYPE"] = "C.UTF-8"
        out.setdefault("LANG", "C.UTF-8")
    for name in ("TMUX", "TMUX_PANE"):
        out.pop(name, None)
    return out
