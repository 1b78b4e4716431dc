"""Where tests keep what outlives a run (downloads, built images): AIKORE_TEST_CACHE, else
~/.cache/aikore-tests; run as root, /var/cache/aikore-tests, because the stacks' two unprivileged
users (aikore_site/privileges.py) run programs from it (a cached Gradio venv) and can't enter /root."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("AIKORE_TEST_CACHE"):
        return Path(os.environ["AIKORE_TEST_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/cache/aikore-tests")
    return Path.home() / ".cache" / "aikore-tests"
