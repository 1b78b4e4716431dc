"""Start an instance's tmux server (run by supervisord as program terminal-<id>-tmux):

    python -m terminals.launcher <spec.json>

The spec, written by terminals/service.py, names the socket, the tmux config and the instance's
variables. The server's environment (which every shell it starts inherits) is built here, in the
supervised process, by the same function that builds the WebUI's: supervisord's environment less
AiKore's secrets and virtualenv, plus the instance's variables; then the instance's Python
environment is activated.
`tmux -D` keeps the server in the foreground, so supervisord owns it.

When the apps run as a user of their own, so does the server, and tmux (3.3+) lets no other user in:
a short-lived child grants AiKore's user access (server-access) and opens the socket to AiKore's
group (tmux makes it 0600), once the server has made it. Standard library only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from instances.launcher import child_environment
from terminals.shellenv import shell_environment

SOCKET_WAIT_SECONDS = 10.0


def open_to(user: str, tmux: str, socket: str) -> None:
    """In a child process: wait for the server's socket, let `user` in, then make the socket
    group-writable (connecting needs write access). Runs as the server's owner."""
    if os.fork() != 0:
        return
    try:
        deadline = time.monotonic() + SOCKET_WAIT_SECONDS
        while True:  # until the server listens
            granted = os.path.exists(socket) and subprocess.run(
                [tmux, "-N", "-S", socket, "server-access", "-a", user], stdin=subprocess.DEVNULL,
                capture_output=True, env={"PATH": os.defpath, "HOME": "/", "LANG": "C.UTF-8"},
                timeout=SOCKET_WAIT_SECONDS).returncode == 0
            if granted or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        os.chmod(socket, 0o660)
    except BaseException as exc:  # a child of tmux-to-be: never return into main()
        print(f"[aikore] terminal: could not open the tmux server to {user}: {exc}", file=sys.stderr, flush=True)
        os._exit(1)
    os._exit(0)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: python -m terminals.launcher <spec.json>")
    with open(argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    env = child_environment(os.environ, spec["env"])
    env = shell_environment(env, python_env=spec.get("python_env"))
    directory = spec["directory"]
    os.chdir(directory if os.path.isdir(directory) else "/")
    if spec.get("client_user"):
        open_to(spec["client_user"], spec["tmux"], spec["socket"])
    os.execvpe(spec["tmux"], [spec["tmux"], "-D", "-S", spec["socket"], "-f", spec["config"]], env)


if __name__ == "__main__":
    main(sys.argv)
