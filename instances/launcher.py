"""Run an instance's launch.sh with the environment AiKore computed for it.

supervisord starts ``python launcher.py <instance dir>``; this reads ``env.json`` from that
directory (written atomically by the start job), builds the child environment and replaces itself
with ``bash launch.sh`` (same PID, so supervisord's process is the blueprint). User-typed values
therefore never pass through a config file or a shell line. Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

# AiKore's own secrets and settings stay out of instances' environments (WebUI and terminal).
SCRUBBED = ("AIKORE_SECRET_KEY", "AIKORE_ADMIN_PASSWORD", "DATABASE_URL", "AIKORE_REDIS_URL",
            "DJANGO_SETTINGS_MODULE", "SUPERVISOR_SERVER_URL", "SUPERVISOR_PROCESS_NAME",
            "SUPERVISOR_GROUP_NAME", "SUPERVISOR_ENABLED")


def child_environment(base: Mapping[str, str], instance_env: Mapping[str, object]) -> dict[str, str]:
    """What an instance's processes run with: this process's environment less AiKore's secrets
    (and less a CUDA_VISIBLE_DEVICES of AiKore's own: the instance's gpu_ids decide), plus the
    instance's variables (Instance.environment()). The WebUI and its terminal (terminals/) both
    start from this."""
    env = {k: v for k, v in base.items() if k not in SCRUBBED}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.update({str(k): str(v) for k, v in instance_env.items()})
    return env


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: launcher.py <instance dir>")
    directory = argv[1]
    with open(os.path.join(directory, "env.json"), encoding="utf-8") as fh:
        spec = json.load(fh)
    env = child_environment(os.environ, spec["env"])
    os.chdir(directory)
    os.execvpe("bash", ["bash", os.path.join(directory, "launch.sh")], env)


if __name__ == "__main__":
    main(sys.argv)
