"""Update and rebuild of an instance's environment: the work behind Instance.update_app() and
Instance.rebuild_env(), run by Huey jobs (instances/tasks.py).

The install itself is the blueprint's (blueprints/functions.sh: aikore_install, aikore_git_sync,
aikore_env_create, aikore_install_torch, aikore_pip_install), so a start, an update and a rebuild
run the same code and report the same steps. This module decides what a run must do:

- *update*: the run fetches the code (the blueprint's git ref, or the instance's override) and
  installs whatever changed; git keeps the user's local edits to tracked files, or refuses the
  update and the step fails saying which files (nothing is thrown away).
- *rebuild*: the environment and the record of its inputs are deleted first, so the run builds a
  fresh one (from the uv cache: packages are hard-linked, not downloaded again).

A running instance is stopped, then started again with the install; a stopped one runs the install
only and stays stopped. Both are said in the API's answer and in the instance's log.
"""

from __future__ import annotations

import logging
import shutil

from django.db.models import F

from instances import lifecycle
from instances.models import ENV_DIRNAME, Conflict, Instance, InstanceStatus

log = logging.getLogger(__name__)

ACTIONS = ("update", "rebuild")


def remove_environment(instance: Instance) -> bool:
    """Delete the instance's own environment (a virtualenv AiKore built; never the code or the
    user's files) and its install record. Returns whether there was one."""
    env = instance.directory / ENV_DIRNAME
    instance.install_record_path.unlink(missing_ok=True)
    if not env.exists() and not env.is_symlink():
        return False
    if env.is_symlink() or not env.is_dir():
        env.unlink()
        return True
    if not (env / "pyvenv.cfg").exists() and any(env.iterdir()):
        # Not a virtualenv: something else lives there, so it is not ours to delete.
        raise Conflict({"instance": [f"{env} is not a Python environment AiKore built; not deleting it."]})
    shutil.rmtree(env)
    return True


def run(pk: int, action: str) -> None:
    """The job: stop if running, prepare, then run the blueprint (install, then launch again or
    exit when the instance was stopped)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown environment action {action!r}")
    instance = Instance.objects.filter(pk=pk).first()
    if instance is None:
        return
    try:
        instance.check_env_action(action)
    except Conflict as exc:
        instance.append_log(f"{action} refused: {' '.join(exc.messages)}")
        return
    was_running = instance.is_active or instance.status == InstanceStatus.STOPPING
    if was_running:
        instance.append_log(f"{action}: stopping the instance; it starts again after the install")
        lifecycle.halt(instance)
    instance.refresh_from_db()
    if action == "rebuild":
        try:
            removed = remove_environment(instance)
        except (Conflict, OSError) as exc:
            reason = " ".join(getattr(exc, "messages", [str(exc)]))
            instance.append_log(f"rebuild failed: {reason}")
            instance.set_status(InstanceStatus.FAILED, error_message=f"Rebuild failed: {reason}")
            return
        instance.append_log("rebuild: environment deleted; building it again" if removed
                            else "rebuild: there was no environment yet; building it")
    else:
        instance.append_log("update: fetching the code and installing what changed")
    Instance.objects.filter(pk=pk).update(want_running=True, restart_count=0, generation=F("generation") + 1)
    lifecycle.launch(pk, action="update" if action == "update" else "start", install_only=not was_running)
