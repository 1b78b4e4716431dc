"""Instance environments through the live stack, offline: a local git repository with a tiny app and
its requirements, local indexes of tiny wheels (fake torch trio included), uv building real
environments in the shared cache. Install steps on /ws/instances/, skipped unchanged installs, an
install longer than the readiness timeout, a failing step, update keeping a local edit, rebuild,
satellites and clones, the cache, the shared models mapping and the app's PATH."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from instances.models import Conflict, Instance, InstanceStatus
from instances.tests.helpers import custom_blueprint, wait_for, wait_status
from instances.tests.test_websockets import recv, session_cookie, ws
from instances.tests.wheels import git, index_wheel, torch_indexes

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
WHEELS = Path(settings.AIKORE_DATA_DIR) / "test-wheels"

APP = '''import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
import tinydep, torch, torchvision
from torch.variant import VARIANT
from version import VERSION

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "version": VERSION, "python": sys.executable, "prefix": sys.prefix,
            "path": os.environ.get("PATH", ""), "virtual_env": os.environ.get("VIRTUAL_ENV"),
            "pythonpath": os.environ.get("PYTHONPATH"), "torch": torch.__version__, "variant": VARIANT,
            "tinydep": tinydep.__version__, "cwd": os.getcwd(), "notes": open("NOTES.txt").read(),
            "gradio_root": os.environ.get("GRADIO_ROOT_PATH"), "output": os.environ.get("INSTANCE_OUTPUT_DIR"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("tiny app on", os.environ["WEBUI_PORT"], flush=True)
HTTPServer(("127.0.0.1", int(os.environ["WEBUI_PORT"])), Handler).serve_forever()
'''

BLUEPRINT = """#!/usr/bin/env bash
# aikore.name: Tiny env app (test)
# aikore.kind: test
# aikore.ready: http /
# aikore.ready_timeout: {ready_timeout}
# aikore.git: {repo}
# aikore.torch: yes
set -euo pipefail
source "$AIKORE_HOME/blueprints/functions.sh"

install() {{
    aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
    aikore_env_create
    aikore_install_torch
    aikore_pip_install -r "$AIKORE_APP_DIR/requirements.txt"
{extra}
}}
aikore_install install requirements.txt
aikore_comfyui_model_paths "$INSTANCE_CONF_DIR/extra_model_paths.yaml"
aikore_link_models checkpoints "$AIKORE_APP_DIR/models/checkpoints"
aikore_link_models loras "$AIKORE_APP_DIR/models/loras"
cd "$AIKORE_APP_DIR"
aikore_exec "$AIKORE_ENV_DIR/bin/python" app.py
"""


@pytest.fixture(scope="session")
def wheels() -> Path:
    """The local indexes aikore_site/testing.py points uv at (UV_INDEX_URL, AIKORE_TORCH_INDEX_BASE)."""
    if not (WHEELS / "simple" / "tinydep").exists():
        index_wheel(WHEELS / "simple", "tinydep", "1.0")
        index_wheel(WHEELS / "simple", "tinydep", "2.0")
        torch_indexes(WHEELS / "torch")
    return WHEELS


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    repo = tmp_path / "upstream"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / "app.py").write_text(APP)
    (repo / "version.py").write_text('VERSION = "v1"\n')
    (repo / "NOTES.txt").write_text("upstream notes\n")
    (repo / "requirements.txt").write_text("tinydep==1.0\n")
    (repo / "models" / "checkpoints").mkdir(parents=True)
    (repo / "models" / "checkpoints" / "put_checkpoints_here").write_text("")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "v1", cwd=repo)
    return repo


def blueprint(name: str, upstream: Path, extra: str = "", ready_timeout: int = 30) -> str:
    return custom_blueprint(name, BLUEPRINT.format(repo=upstream, extra=extra, ready_timeout=ready_timeout))


def app_info(instance: Instance) -> dict:
    instance.refresh_from_db()
    with urllib.request.urlopen(f"http://127.0.0.1:{instance.port}/", timeout=5) as resp:
        return json.loads(resp.read())


def statuses_until(conn, pk: int, final: tuple[str, ...], timeout: float = 60) -> list[dict]:
    """Every event of instance pk until its status is one of `final`."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = recv(conn, max(0.1, deadline - time.monotonic()))
        inst = msg.get("instance") or {}
        if msg.get("type") == "instance" and inst.get("id") == pk:
            seen.append(inst)
            if inst["status"] in final:
                return seen
    raise AssertionError(f"no {final} within {timeout}s: {[(e['status'], e['install_step']) for e in seen]}")


def test_install_steps_then_running_then_a_start_that_skips_installing(live, alice, wheels, upstream):
    bp = blueprint("envapp", upstream, extra='    aikore_step "warming up" 3 4\n    sleep 0.3\n')
    instance = Instance.objects.create_instance(name="Env App", blueprint=bp, torch_variant="cpu")
    (Path(settings.MODELS_DIR) / "checkpoints").mkdir(parents=True, exist_ok=True)
    (Path(settings.MODELS_DIR) / "checkpoints" / "shared.safetensors").write_text("W")
    with ws("/ws/instances/", session_cookie(alice)) as conn:
        recv(conn)  # snapshot
        instance.start()
        events = statuses_until(conn, instance.pk, ("running", "failed"))
    instance.refresh_from_db()
    assert events[-1]["status"] == "running", instance.error_message
    installing = [(e["install_step"], e["install_progress"]) for e in events if e["status"] == "installing"]
    assert ("warming up", 0.75) in installing, installing  # a step that lasts is always seen
    assert events[-1]["install_step"] == "" and events[-1]["install_progress"] is None
    # Quick steps may come and go between two polls; the log has every one, in order.
    log = instance.log_tail(20000)
    steps = [line.split("step: ", 1)[1] for line in log.splitlines() if "] step: " in line]
    assert [s.split(" ")[0] for s in steps[:3]] == ["preparing", "cloning", "creating"], steps
    assert any(s.startswith("installing torch (cpu)") for s in steps), steps
    assert any(s.startswith("installing requirements") for s in steps), steps

    info = app_info(instance)
    env_dir = instance.directory / "env"
    assert info["python"] == str(env_dir / "bin" / "python") and info["prefix"] == str(env_dir)
    assert (info["torch"], info["variant"], info["tinydep"]) == ("2.9.0", "cpu", "1.0")
    assert info["gradio_root"] == f"/instance/{instance.slug}"
    # AiKore's own venv is nowhere in the app's environment.
    aikore_bin = str(REPO / ".venv" / "bin")
    assert aikore_bin not in info["path"].split(os.pathsep)
    assert info["virtual_env"] is None and info["pythonpath"] is None

    # Shared models: linked into the app without dirtying its checkout or losing a file.
    app = instance.directory / "app"
    assert (app / "models" / "checkpoints" / "put_checkpoints_here").exists()
    assert (app / "models" / "checkpoints" / "shared.safetensors").read_text() == "W"
    assert (app / "models" / "loras").is_symlink()
    assert git("status", "--porcelain", cwd=app) == ""
    assert (Path(settings.MODELS_DIR) / "checkpoints" / "shared.safetensors").read_text() == "W"
    assert (Path(settings.MODELS_DIR) / "README.md").exists() and (Path(settings.MODELS_DIR) / "vae").is_dir()
    assert f"base_path: '{settings.MODELS_DIR}'" in (instance.directory / "extra_model_paths.yaml").read_text()

    # Nothing changed: the next start goes straight to the launch, no `installing` at all.
    instance.stop()
    wait_status(instance, InstanceStatus.STOPPED)
    with ws("/ws/instances/", session_cookie(alice)) as conn:
        recv(conn)
        instance.start()
        again = statuses_until(conn, instance.pk, ("running", "failed"))
    assert [e["status"] for e in again if e["status"] == "installing"] == []
    assert again[-1]["status"] == "running"
    assert "install inputs unchanged since the last install: skipping it" in instance.log_tail(20000)

    # A changed input (the torch variant) installs again: torch comes from the other index.
    instance.refresh_from_db()
    result = instance.update_settings({"torch_variant": "cu128"})
    assert result["restarted"]
    wait_for(lambda: app_info_or_none(instance, "variant") == "cu128", 60, "torch from the cu128 index")


def app_info_or_none(instance: Instance, key: str) -> object:
    try:
        return app_info(instance).get(key)
    except OSError:
        return None


def test_install_longer_than_the_readiness_timeout_is_not_killed(live, wheels, upstream):
    bp = blueprint("slowinstall", upstream, ready_timeout=2,
                   extra='    aikore_step "compiling slowly" 1 2\n    sleep 3.5\n')
    instance = Instance.objects.create_instance(name="Slow Install", blueprint=bp)
    instance.start()
    wait_for(lambda: Instance.objects.get(pk=instance.pk).install_step == "compiling slowly", 30, "the slow step")
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.INSTALLING and instance.install_progress == 0.5
    wait_status(instance, InstanceStatus.RUNNING, InstanceStatus.FAILED, timeout=30)
    assert instance.status == InstanceStatus.RUNNING, instance.error_message
    assert "install finished" in instance.log_tail()


def test_a_failing_step_fails_the_instance_with_its_name(live, wheels, upstream):
    bp = blueprint("failinstall", upstream, extra='    aikore_step "building kernels"\n    echo "nvcc: not found" >&2\n    exit 4\n')
    instance = Instance.objects.create_instance(name="Fail Install", blueprint=bp)
    instance.start()
    wait_status(instance, InstanceStatus.FAILED, timeout=60)
    assert "building kernels" in instance.error_message
    assert "nvcc: not found" in instance.error_message and "exit code 4" in instance.error_message
    assert instance.restart_count == 0  # an install failure is not retried in a loop
    assert instance.install_step == "building kernels"


def test_unavailable_python_names_the_ones_there_are(live, wheels, upstream):
    instance = Instance.objects.create_instance(name="Old Python", blueprint=blueprint("oldpy", upstream),
                                                python_version="3.99")
    instance.start()
    wait_status(instance, InstanceStatus.FAILED, timeout=60)
    assert "creating the Python environment (Python 3.99)" in instance.error_message
    assert "Pythons on this machine: 3." in instance.error_message


def test_update_to_a_new_commit_keeps_a_local_edit_and_rebuild(live, wheels, upstream):
    instance = Instance.objects.create_instance(name="Updatable", blueprint=blueprint("updatable", upstream))
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING, InstanceStatus.FAILED, timeout=60)
    assert instance.status == InstanceStatus.RUNNING, instance.error_message
    assert app_info(instance)["version"] == "v1"
    app = instance.directory / "app"
    (app / "NOTES.txt").write_text("my local notes\n")  # an edit to a tracked file
    (upstream / "version.py").write_text('VERSION = "v2"\n')
    (upstream / "requirements.txt").write_text("tinydep==2.0\n")
    git("commit", "-qam", "v2", cwd=upstream)

    result = instance.update_app()
    assert result["restarts"] and "stopping it now" in result["message"]
    wait_for(lambda: app_info_or_none(instance, "version") == "v2", 60, "the updated app")
    info = app_info(instance)
    assert info["notes"] == "my local notes\n" and info["tinydep"] == "2.0"
    log = instance.log_tail(20000)
    assert "update: stopping the instance; it starts again after the install" in log
    assert "your local edits were kept" in log

    # An upstream change to the edited file: the update refuses, says why, changes nothing.
    (upstream / "NOTES.txt").write_text("upstream notes v3\n")
    git("commit", "-qam", "v3", cwd=upstream)
    instance.refresh_from_db()
    instance.update_app()
    wait_status(instance, InstanceStatus.FAILED, timeout=60)
    assert "local edits" in instance.error_message and "updating the code" in instance.error_message
    assert (app / "NOTES.txt").read_text() == "my local notes\n"
    assert git("rev-parse", "HEAD", cwd=app) == git("rev-parse", "HEAD~1", cwd=upstream)

    # Rebuild of a stopped instance: a new environment, built from the cache; it stays stopped.
    (app / "NOTES.txt").write_text("upstream notes\n")
    git("checkout", "NOTES.txt", cwd=app)  # the user resolves it their way
    (instance.directory / "env" / "old-env-marker").write_text("")
    instance.refresh_from_db()
    result = instance.rebuild_env()
    assert not result["restarts"] and "stays stopped" in result["message"]
    wait_for(lambda: "install finished; not launching" in instance.log_tail(), 60, "the install-only run")
    wait_status(instance, InstanceStatus.STOPPED, timeout=30)
    assert (instance.directory / "env" / "bin" / "python").exists()
    assert not (instance.directory / "env" / "old-env-marker").exists()
    log = instance.log_tail(20000)
    assert "rebuild: environment deleted; building it again" in log
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING, InstanceStatus.FAILED, timeout=60)
    assert app_info(instance)["version"] == "v2"  # a plain start never fetches


def test_satellite_runs_the_parents_install_and_clone_builds_from_the_cache(live, wheels, upstream):
    parent = Instance.objects.create_instance(name="Env Parent", blueprint=blueprint("parentapp", upstream))
    parent.start()
    wait_status(parent, InstanceStatus.RUNNING, InstanceStatus.FAILED, timeout=60)
    assert parent.status == InstanceStatus.RUNNING, parent.error_message

    satellite = Instance.objects.create_instance(name="Env Satellite", blueprint="ignored-for-satellites",
                                                 parent=parent.pk, output_path="sat-out")
    assert satellite.base_blueprint == parent.base_blueprint
    satellite.start()
    wait_status(satellite, InstanceStatus.RUNNING, InstanceStatus.FAILED, timeout=60)
    assert satellite.status == InstanceStatus.RUNNING, satellite.error_message
    info = app_info(satellite)
    assert info["python"] == str(parent.directory / "env" / "bin" / "python")
    assert info["cwd"] == str(parent.directory / "app")
    assert info["output"] == str(Path(settings.OUTPUTS_DIR) / "sat-out")
    assert satellite.port != parent.port and satellite.log_path != parent.log_path
    assert not (satellite.directory / "env").exists() and not (satellite.directory / "app").exists()
    assert "satellite of env-parent" in satellite.log_tail()

    with pytest.raises(Conflict, match="satellites"):
        parent.delete_everything()
    with pytest.raises(Conflict, match="satellite"):
        satellite.update_app()
    with pytest.raises(Conflict, match="Satellites are running"):
        parent.rebuild_env()

    # The clone: its own code copy and environment, packages hard-linked from the shared cache.
    clone = parent.clone("Env Parent Copy")
    assert clone.parent_id is None and (clone.directory / "app" / "app.py").exists()
    started = time.monotonic()
    clone.start()
    wait_status(clone, InstanceStatus.RUNNING, InstanceStatus.FAILED, timeout=60)
    assert clone.status == InstanceStatus.RUNNING, clone.error_message
    clone_seconds = time.monotonic() - started
    assert app_info(clone)["python"] == str(clone.directory / "env" / "bin" / "python")
    site = "lib/python{0}.{1}/site-packages/tinydep/__init__.py"
    import sys

    parent_file = parent.directory / "env" / site.format(*sys.version_info[:2])
    clone_file = clone.directory / "env" / site.format(*sys.version_info[:2])
    assert parent_file.stat().st_ino == clone_file.stat().st_ino  # one file, two environments
    assert "step: cloning" not in clone.log_tail(20000)  # its code came with it
    assert clone_seconds < 60

    satellite.delete_everything()
    parent.delete_everything()  # no satellites left
    assert not Instance.objects.filter(pk=parent.pk).exists()


def test_an_install_survives_a_worker_crash_and_a_dead_one_is_reconciled(live, wheels, upstream):
    from django.core.management import call_command

    from instances.tests.test_lifecycle import _restart_and_wait

    bp = blueprint("crashinstall", upstream, ready_timeout=2,
                   extra='    aikore_step "long step" 1 2\n    sleep 8\n')
    instance = Instance.objects.create_instance(name="Crash Install", blueprint=bp)
    instance.start()
    wait_for(lambda: Instance.objects.get(pk=instance.pk).install_step == "long step", 40, "the long step")
    _restart_and_wait(live, "worker")  # the readiness wait dies with it; reconcile resumes it
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.INSTALLING
    wait_status(instance, InstanceStatus.RUNNING, InstanceStatus.FAILED, timeout=60)
    assert instance.status == InstanceStatus.RUNNING, instance.error_message

    # An instance recorded as installing whose process is gone (AiKore died with it) and that is
    # meant to run: the install runs again (reconcile brings back what should run), and the log
    # says which step was cut short.
    ghost = Instance.objects.create_instance(name="Ghost Install", blueprint=bp)
    Instance.objects.filter(pk=ghost.pk).update(status=InstanceStatus.INSTALLING, pid=999999, want_running=True,
                                                install_step="installing requirements")
    call_command("instances", "reconcile")
    wait_for(lambda: "interrupted at step 'installing requirements'; running it again"
             in Instance.objects.get(pk=ghost.pk).log_tail(), 10, "the interrupted-install note")
    wait_status(ghost, InstanceStatus.RUNNING, InstanceStatus.FAILED, timeout=60)
    assert ghost.status == InstanceStatus.RUNNING, ghost.error_message

    # The same with nobody wanting it to run any more: stopped, saying which step was cut short;
    # the next start installs again.
    idle = Instance.objects.create_instance(name="Idle Install", blueprint=bp)
    Instance.objects.filter(pk=idle.pk).update(status=InstanceStatus.INSTALLING, pid=999999, want_running=False,
                                               install_step="installing requirements")
    call_command("instances", "reconcile")
    idle.refresh_from_db()
    assert idle.status == InstanceStatus.STOPPED and not idle.want_running
    assert "installing requirements" in idle.error_message and idle.install_step == ""


HELD_INSTALL = """#!/usr/bin/env bash
# aikore.name: Held install (test)
# aikore.kind: test
# aikore.ready: none
# aikore.python: 3.11
set -euo pipefail
source "$AIKORE_HOME/blueprints/functions.sh"

install() {
    aikore_step "waiting for the go"
    while [[ ! -e "$INSTANCE_CONF_DIR/go" ]]; do sleep 0.05; done
}
aikore_install install
aikore_exec sleep 600
"""


def test_an_install_only_run_cut_short_by_aikore_is_resumed_as_one(live):
    """The update of a stopped instance is interrupted when AiKore stops (or its supervisord dies):
    at the next boot the reconcile runs it again as an install-only run, and the instance stays
    stopped, as the update promised, instead of a plain start that launches the app."""
    from instances import lifecycle, supervisor

    instance = Instance.objects.create_instance(name="Held Update", blueprint=custom_blueprint("held-install",
                                                                                                HELD_INSTALL))
    assert instance.update_app()["restarts"] is False
    wait_status(instance, InstanceStatus.INSTALLING)
    # What a shutdown of AiKore leaves (lifecycle.shutdown_stack): the processes ended, the
    # instance stopped but still meant to run (want_running), so that the next boot resumes it.
    Instance.objects.filter(pk=instance.pk).update(pid=None)  # not a crash: no one records this exit
    supervisor.stop_group(instance.pk)
    instance.refresh_from_db()
    instance.set_status(InstanceStatus.STOPPED, pid=None, pid_create_time=None)
    assert instance.want_running
    (instance.directory / "go").touch()
    changes = lifecycle.reconcile()
    assert "held-update: meant to run, starting it (install-only update resumed)" in changes, changes
    wait_for(lambda: Instance.objects.filter(pk=instance.pk, status=InstanceStatus.STOPPED, want_running=False)
             .exists(), 30, "the resumed install-only run to end")
    log = instance.log_tail(20000)
    assert "install-only run done; the instance stays stopped" in log
    assert "exec: sleep 600" not in log  # the app never launched
