"""Run an instance's launch.sh with the environment AiKore computed for it.

supervisord starts ``python launcher.py <instance dir>``; this reads ``env.json`` from that
directory (written atomically by the start job), builds the child environment and replaces itself
with ``bash launch.sh`` (same PID, so supervisord's process is the blueprint). User-typed values
therefore never pass through a config file or a shell line. Standard library only.

AiKore's own Python environment stays out of the app's way: its bin directory leaves PATH and
VIRTUAL_ENV, PYTHONHOME and PYTHONPATH are dropped, so `python`/`pip` in a blueprint are never
AiKore's (the app's environment is built by uv, see blueprints/functions.sh).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

# AiKore's own secrets and settings stay out of instances' environments (WebUI and terminal):
# every variable with one of these prefixes (its settings: AIKORE_NOTIFY_URLS holds notification
# passwords and tokens, AIKORE_SECRET_KEY...; Django's; supervisord's) is dropped, whatever new
# setting appears, except the process markers (aikore_site/procs.py) and the instance's cgroup,
# which the launcher takes for itself. What an app needs comes from Instance.environment().
SCRUBBED_PREFIXES = ("AIKORE_", "DJANGO_", "SUPERVISOR_")
PASSED = ("AIKORE_STACK_ID", "AIKORE_TERMINAL", "AIKORE_CGROUP")
SCRUBBED = ("AIKORE_SECRET_KEY", "AIKORE_ADMIN_PASSWORD", "DATABASE_URL", "AIKORE_REDIS_URL",
            "DJANGO_SETTINGS_MODULE", "SUPERVISOR_SERVER_URL", "SUPERVISOR_PROCESS_NAME",
            "SUPERVISOR_GROUP_NAME", "SUPERVISOR_ENABLED",
            # AiKore's own Python environment: never the app's.
            "VIRTUAL_ENV", "VIRTUAL_ENV_PROMPT", "PYTHONHOME", "PYTHONPATH", "CONDA_PREFIX")


def scrubbed(name: str) -> bool:
    """Whether a variable of AiKore's own environment stays out of an instance's."""
    return name in SCRUBBED or (name.startswith(SCRUBBED_PREFIXES) and name not in PASSED)


def own_bin_dirs() -> set[str]:
    """The bin directory of the virtualenv running AiKore (never a system directory such as
    /usr/bin: AiKore installed into a system Python leaves PATH alone)."""
    dirs = set()
    exe_dir = os.path.dirname(sys.executable)  # unresolved: a venv's python is a symlink
    if os.path.exists(os.path.join(os.path.dirname(exe_dir), "pyvenv.cfg")):
        dirs.add(exe_dir)
    if sys.prefix != sys.base_prefix:  # a venv, when site ran (not under python -S)
        dirs.add(os.path.join(sys.prefix, "bin"))
    if os.environ.get("VIRTUAL_ENV"):
        dirs.add(os.path.join(os.environ["VIRTUAL_ENV"], "bin"))
    return dirs | {os.path.realpath(d) for d in dirs}


def scrub_path(path: str, exclude: set[str]) -> str:
    return os.pathsep.join(p for p in path.split(os.pathsep) if p and p not in exclude
                           and os.path.realpath(p) not in exclude)

MARKERS = ("AIKORE_STACK_ID", "AIKORE_INSTANCE")


def join_cgroup(path: str) -> None:
    """Move this process (and so everything launch.sh starts) into the instance's cgroup, which no
    descendant can leave. Where that is not allowed, the environment markers still find them."""
    if not path:
        return
    try:
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "cgroup.procs"), "w") as fh:
            fh.write("0")
    except OSError as exc:
        print(f"[aikore] no cgroup for this instance ({exc.strerror}); its processes are found by their "
              "environment", file=sys.stderr, flush=True)


def child_environment(base: Mapping[str, str], instance_env: Mapping[str, object]) -> dict[str, str]:
    """What an instance's processes run with: this process's environment less AiKore's secrets
    and its own Python environment (and less a CUDA_VISIBLE_DEVICES of AiKore's own: the
    instance's gpu_ids decide), plus the instance's variables (Instance.environment()). The WebUI
    and its terminal (terminals/) both start from this."""
    env = {k: v for k, v in base.items() if not scrubbed(k)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["PATH"] = scrub_path(env.get("PATH", os.defpath), own_bin_dirs()) or os.defpath
    env.update({str(k): str(v) for k, v in instance_env.items()})
    return env


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: launcher.py <instance dir>")
    directory = argv[1]
    with open(os.path.join(directory, "env.json"), encoding="utf-8") as fh:
        spec = json.load(fh)
    env = child_environment(os.environ, spec["env"])
    # The markers that let AiKore find every process this instance starts (aikore_site/procs.py):
    # supervisord sets them; they must reach launch.sh whatever else changes above. (Not in
    # child_environment(): a terminal's shell outlives the app's stop, so it is not marked.)
    env.update({k: os.environ[k] for k in MARKERS if k in os.environ})
    join_cgroup(env.pop("AIKORE_CGROUP", ""))
    os.chdir(directory)
    os.execvpe("bash", ["bash", os.path.join(directory, "launch.sh")], env)


if __name__ == "__main__":
    main(sys.argv)
