"""supervisord's command for nginx: `python proxy/run_nginx.py <nginx> <arguments>`.

When nginx's master dies (SIGKILL, OOM), its workers live on, still holding the listening
sockets with the old configuration: a new master cannot bind ("Address already in use") and
supervisord restarts it in a loop. So before becoming nginx (exec, same PID, so supervisord's
process is the master), this ends every nginx process of this stack: those whose working directory
is this stack's nginx directory (supervisord's `directory=` for nginx; aikore_site/procs.py).
supervisord only starts this when its nginx is not running, so any such process is a leftover.
Standard library and psutil only (no Django).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aikore_site import procs

STALE_GRACE_SECONDS = 2.0


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: run_nginx.py <nginx binary> [nginx arguments]")
    stale = procs.nginx_processes(Path.cwd())
    if stale:
        sys.stderr.write(f"run_nginx: ending {len(stale)} nginx process(es) a dead master left: "
                         f"{' '.join(str(p.pid) for p in stale)}\n")
        procs.terminate(stale, STALE_GRACE_SECONDS)
    os.execv(argv[1], argv[1:])


if __name__ == "__main__":
    main(sys.argv)
