"""Start an instance's tmux server (run by supervisord as program terminal-<id>-tmux):

    python -m terminals.launcher <spec.json>

The spec, written by terminals/service.py, names the socket, the tmux config and the instance's
variables. The server's environment (which every shell it starts inherits) is built here, in the
supervised process, by the same function that builds the WebUI's: supervisord's environment less
AiKore's secrets and virtualenv, plus the instance's variables; then the instance's Python
environment is activated.
`tmux -D` keeps the server in the foreground, so supervisord owns it. Standard library only."""

from __future__ import annotations

import json
import os
import sys

from instances.launcher import child_environment
from terminals.shellenv import shell_environment


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: python -m terminals.launcher <spec.json>")
    with open(argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    env = child_environment(os.environ, spec["env"])
    env = shell_environment(env, python_env=spec.get("python_env"))
    directory = spec["directory"]
    os.chdir(directory if os.path.isdir(directory) else "/")
    os.execvpe(spec["tmux"], [spec["tmux"], "-D", "-S", spec["socket"], "-f", spec["config"]], env)


if __name__ == "__main__":
    main(sys.argv)
