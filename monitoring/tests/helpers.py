"""Real process trees for the monitoring tests (psutil is never mocked)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator

import psutil


def _settled(root: psutil.Process, children: int) -> bool:
    """`children` descendants, none of them a bash fork that hasn't exec'd its command yet."""
    try:
        found = root.children(recursive=True)
        return len(found) == children and all(p.name() != "bash" for p in found)
    except psutil.Error:
        return False


@contextlib.contextmanager
def process_tree(script: str, children: int) -> Iterator[psutil.Process]:
    """Run `script` in bash and wait until the shell has `children` descendants; kill the tree after."""
    proc = subprocess.Popen(["bash", "-c", script], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + 10
        while not _settled(root, children):
            if time.monotonic() > deadline:
                raise AssertionError(f"{script!r} did not start {children} children")
            time.sleep(0.01)
        yield root
    finally:
        for p in [*root.children(recursive=True), root]:
            with contextlib.suppress(psutil.Error):
                p.kill()
        proc.wait(5)
