"""Environment settings without live processes: the torch variant mapping (NVML through the synthetic
GPU source), blueprint metadata, the instance environment, validation through every entry point,
satellites' rules, the delete plan, and the launcher's PATH."""

from __future__ import annotations

import json
import os
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client

from instances import blueprints, launcher, torchvariants
from instances.gpus import cuda_version_of
from instances.models import Conflict, Instance
from monitoring.collectors import SyntheticGpu, SyntheticGpuSource

pytestmark = pytest.mark.django_db

HEADER = """#!/usr/bin/env bash
# aikore.name: Env BP
# aikore.category: Testing
# aikore.description: for environment tests
# aikore.ready: none
# aikore.git: https://example.org/app.git
# aikore.git_ref: v1.2
# aikore.python: 3.12
# aikore.torch: yes
# aikore.proxy: {proxy}
exec sleep 100
"""


@pytest.fixture
def bp() -> str:
    (Path(settings.CUSTOM_BLUEPRINTS_DIR) / "env-bp.sh").write_text(HEADER.format(proxy="strip"))
    return "env-bp"


@pytest.fixture
def client(alice) -> Client:
    c = Client(enforce_csrf_checks=True)
    c.get("/login/")
    c.force_login(alice)
    return c


def send(c: Client, method: str, url: str, data: object = None):
    token = c.cookies[settings.CSRF_COOKIE_NAME].value
    return getattr(c, method)(url, json.dumps(data) if data is not None else None,
                              content_type="application/json", HTTP_X_CSRFTOKEN=token)


# --- torch variants -------------------------------------------------------------------------------


@pytest.mark.parametrize(("cuda", "variant"), [
    ((13, 1), "cu130"), ((13, 0), "cu130"), ((12, 9), "cu129"), ((12, 8), "cu128"), ((12, 7), "cu126"),
    ((12, 5), "cu124"), ((11, 8), "cu118"), ((11, 4), "cpu"), (None, "cpu"),
])
def test_auto_variant_follows_the_drivers_cuda(cuda, variant):
    assert torchvariants.for_cuda(cuda) == variant
    assert torchvariants.resolve("auto", lambda: cuda) == variant
    assert torchvariants.resolve("cu126", lambda: cuda) == "cu126"  # an explicit choice wins


def test_cuda_version_comes_from_nvml_through_the_gpu_source():
    assert cuda_version_of(SyntheticGpuSource([SyntheticGpu()], cuda_version=12080)) == (12, 8)
    assert cuda_version_of(SyntheticGpuSource([SyntheticGpu()], cuda_version=13000)) == (13, 0)
    assert cuda_version_of(SyntheticGpuSource([], cuda_version=12080)) is None  # no GPU: CPU wheels
    assert cuda_version_of(SyntheticGpuSource([SyntheticGpu()])) is None  # not supported
    broken = SyntheticGpuSource([SyntheticGpu()], cuda_version=12080)
    broken.init_error = 9  # NVML_ERROR_DRIVER_NOT_LOADED
    assert cuda_version_of(broken) is None


def test_index_url_is_one_mapping(settings):
    settings.AIKORE_TORCH_INDEX_BASE = "https://download.pytorch.org/whl"
    assert torchvariants.index_url("cu128") == "https://download.pytorch.org/whl/cu128"
    assert torchvariants.index_url("cpu") == "https://download.pytorch.org/whl/cpu"
    with pytest.raises(ValueError):
        torchvariants.index_url("auto")
    with pytest.raises(ValueError):
        torchvariants.index_url("cu12/../x")


# --- blueprint metadata ---------------------------------------------------------------------------


def test_header_keys_are_parsed_and_checked(tmp_path):
    path = tmp_path / "x.sh"
    path.write_text(HEADER.format(proxy="origin"))
    bp = blueprints.load_blueprint(path, custom=True)
    assert (bp.git_url, bp.git_ref, bp.python_version, bp.torch, bp.proxy_mode, bp.kind) == (
        "https://example.org/app.git", "v1.2", "3.12", True, "origin", "app")
    assert bp.installs and bp.problems == ()
    path.write_text("# aikore.kind: daemon\n# aikore.python: two\n# aikore.git: --upload-pack=x\n"
                    "# aikore.proxy: mirror\n# aikore.colour: red\n# aikore.ready: smoke\n")
    bp = blueprints.load_blueprint(path, custom=True)
    assert (bp.kind, bp.python_version, bp.git_url, bp.proxy_mode, bp.ready) == ("app", "", "", "strip", "tcp")
    assert len(bp.problems) == 6 and any("aikore.colour" in p for p in bp.problems)
    assert not bp.installs


def test_only_apps_are_offered_and_a_library_is_never_an_instance(client):
    kinds = {b["id"]: b["kind"] for b in client.get("/api/blueprints").json()}
    assert kinds["functions"] == "library" and kinds["99-test-logs"] == "test" and kinds["demo-webui"] == "app"
    apps = client.get("/api/blueprints?kind=app").json()
    assert "demo-webui" in {b["id"] for b in apps} and all(b["kind"] == "app" for b in apps)
    assert client.get("/api/blueprints?kind=nonsense").status_code == 422
    r = send(client, "post", "/api/instances", {"name": "Lib", "blueprint": "functions"})
    assert r.status_code == 422 and "library" in r.json()["detail"]


# --- fields, validation, environment --------------------------------------------------------------


def test_defaults_from_the_blueprint_and_validation_everywhere(client, bp):
    r = send(client, "post", "/api/instances", {"name": "Env One", "blueprint": bp})
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["python_version"], body["torch_variant"], body["git_ref"], body["parent"]) == ("3.12", "auto", "", None)
    r = send(client, "post", "/api/instances", {"name": "Env Bad", "blueprint": bp, "python_version": "2.7",
                                                "torch_variant": "cuda12", "git_ref": "-x"})
    assert r.status_code == 422
    assert set(r.json()["errors"]) == {"python_version", "torch_variant", "git_ref"}  # all at once
    r = send(client, "patch", f"/api/instances/{body['id']}", {"torch_variant": "CU128", "git_ref": "feature/x"})
    assert r.status_code == 200, r.content
    assert set(r.json()["changed"]) == {"torch_variant", "git_ref"}
    assert r.json()["instance"]["torch_variant"] == "cu128"
    r = send(client, "patch", f"/api/instances/{body['id']}", {"git_ref": "a..b"})
    assert r.status_code == 422 and "git_ref" in r.json()["errors"]
    instance = Instance.objects.get(pk=body["id"])
    with pytest.raises(ValidationError):
        instance.clean_changes({"python_version": "3.x"})


def test_the_environment_names_the_install(bp, settings):
    settings.AIKORE_TORCH_INDEX_BASE = "file:///wheels"
    instance = Instance.objects.create_instance(name="Env Vars", blueprint=bp, torch_variant="cu128")
    env = instance.environment()
    assert env["AIKORE_ENV_DIR"] == str(instance.directory / "env")
    assert env["AIKORE_APP_DIR"] == str(instance.directory / "app")
    assert env["AIKORE_PYTHON_VERSION"] == "3.12" and env["AIKORE_GIT_REF"] == "v1.2"
    assert env["AIKORE_GIT_URL"] == "https://example.org/app.git"
    assert (env["AIKORE_TORCH_VARIANT"], env["AIKORE_TORCH_INDEX_URL"]) == ("cu128", "file:///wheels/cu128")
    assert env["UV_CACHE_DIR"] == str(Path(settings.AIKORE_DATA_DIR) / "cache" / "uv")
    assert env["UV_LINK_MODE"] == "hardlink" and Path(env["AIKORE_UV"]).name == "uv"
    assert env["GRADIO_ROOT_PATH"] == "/instance/env-vars"
    assert env["AIKORE_ACTION"] == "start" and env["AIKORE_INSTALL_ONLY"] == ""
    assert "AIKORE_SATELLITE_OF" not in env
    assert instance.environment(action="update", install_only=True)["AIKORE_INSTALL_ONLY"] == "1"
    instance.update_settings({"git_ref": "main"})
    assert instance.environment()["AIKORE_GIT_REF"] == "main"
    # The instance's own launch.sh header counts (the user may edit it): prefix kept -> no Gradio root.
    instance.write_script(HEADER.format(proxy="keep"))
    assert "GRADIO_ROOT_PATH" not in instance.environment()


def test_satellite_rules(client, bp):
    parent = Instance.objects.create_instance(name="Unit Parent", blueprint=bp, torch_variant="cpu")
    r = send(client, "post", "/api/instances", {"name": "Unit Sat", "blueprint": "demo-webui", "parent": parent.pk,
                                                "gpu_ids": "1"})
    assert r.status_code == 201, r.content
    sat = Instance.objects.get(pk=r.json()["id"])
    assert sat.base_blueprint == bp and sat.parent == parent and sat.gpu_ids == "1"
    assert sat.read_script() == parent.read_script()
    env = sat.environment()
    assert env["AIKORE_ENV_DIR"] == str(parent.directory / "env") and env["AIKORE_APP_DIR"] == str(parent.directory / "app")
    assert env["AIKORE_INSTALL_RECORD"] == str(parent.install_record_path)
    assert env["INSTANCE_CONF_DIR"] == str(sat.directory) and env["AIKORE_SATELLITE_OF"] == "unit-parent"
    assert env["AIKORE_INSTALL_STATUS"] == str(sat.directory / "install.json")
    # Its environment settings are the parent's.
    r = send(client, "patch", f"/api/instances/{sat.pk}", {"python_version": "3.11"})
    assert r.status_code == 422 and "parent" in r.json()["detail"].lower()
    parent.update_settings({"torch_variant": "cu126"})
    sat = Instance.objects.get(pk=sat.pk)
    assert sat.environment()["AIKORE_TORCH_VARIANT"] == "cu126"
    assert client.get(f"/api/instances/{sat.pk}").json()["torch_variant"] == "cu126"
    # No satellite of a satellite; no update/rebuild of a satellite; the parent can't go first.
    r = send(client, "post", "/api/instances", {"name": "Unit Sat2", "blueprint": bp, "parent": sat.pk})
    assert r.status_code == 422 and "satellite" in r.json()["detail"]
    for action in ("update", "rebuild"):
        r = send(client, "post", f"/api/instances/{sat.pk}/{action}")
        assert r.status_code == 409 and "satellite" in r.json()["detail"]
    r = send(client, "delete", f"/api/instances/{parent.pk}")
    assert r.status_code == 409 and "Unit Sat" in r.json()["detail"]
    assert client.get(f"/api/instances/{parent.pk}/deletion").json()["blocked_by_satellites"] == ["Unit Sat"]


def test_update_and_rebuild_answer_503_while_supervisord_does_not_answer(client, bp):
    """As start, stop and restart do: a job that cannot run is not accepted (a rebuild would
    delete the environment, then fail to launch)."""
    from unittest import mock

    from huey.contrib.djhuey import HUEY

    instance = Instance.objects.create_instance(name="No Supervisor", blueprint=bp)
    (instance.directory / "env").mkdir()
    (instance.directory / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    with mock.patch("instances.supervisor.is_available", return_value=False):
        for action in ("update", "rebuild"):
            r = send(client, "post", f"/api/instances/{instance.pk}/{action}")
            assert r.status_code == 503 and "supervisord" in r.json()["detail"], r.content
    assert not [t for t in HUEY.pending() if t.name in ("update_instance", "rebuild_instance")]
    assert (instance.directory / "env" / "pyvenv.cfg").exists()


def test_deletion_plan_and_trash_by_default_for_user_files(client, bp):
    instance = Instance.objects.create_instance(name="Deletable", blueprint=bp)
    plan = client.get(f"/api/instances/{instance.pk}/deletion").json()
    assert not plan["user_data"] and not plan["trash_default"]
    assert {k["what"] for k in plan["kept"]} >= {"its outputs", "the shared models"}
    (instance.directory / "app" / "user").mkdir(parents=True)
    (instance.directory / "app" / "user" / "workflow.json").write_text("{}")
    (instance.directory / "env").mkdir()
    (instance.directory / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    plan = client.get(f"/api/instances/{instance.pk}/deletion").json()
    assert plan["user_data"] and plan["trash_default"]
    whats = {Path(r["path"]).name: r["what"] for r in plan["removed"]}
    assert "saved workflows" in whats["app"] and "environment" in whats["env"]
    instance.delete_everything = _halt_free(instance)  # no supervisord here: delete without it
    trash_before = set(Path(settings.TRASH_DIR).iterdir())
    instance.delete_everything()
    [trashed] = set(Path(settings.TRASH_DIR).iterdir()) - trash_before
    assert (trashed / "app" / "user" / "workflow.json").read_text() == "{}"
    assert not (trashed / "env").exists()  # rebuildable: not kept


@pytest.mark.django_db(transaction=True)
def test_delete_removes_the_terminal_once_the_rows_delete_has_committed(bp):
    """Never inside the delete's transaction: the terminal's cleanup talks to supervisord and
    waits for shells, which would hold the database's write lock all that time."""
    from unittest import mock

    from django.db import connection

    instance = Instance.objects.create_instance(name="Terminal Goes", blueprint=bp)
    pk = instance.pk
    seen = []

    def remove(pk: int) -> None:
        seen.append((pk, connection.in_atomic_block, Instance.objects.filter(pk=pk).exists()))

    with mock.patch("terminals.service.remove", side_effect=remove):
        _halt_free(instance)()
    assert seen == [(pk, False, False)]


def test_two_deletes_of_one_name_in_the_same_second_keep_both_folders(bp):
    from unittest import mock

    trashed = []
    with mock.patch("time.time", return_value=1_700_000_000.0):
        for content in ("first", "second"):
            instance = Instance.objects.create_instance(name="Same Name", blueprint=bp)
            (instance.directory / "notes.txt").write_text(content)
            before = set(Path(settings.TRASH_DIR).iterdir())
            _halt_free(instance)()
            [folder] = set(Path(settings.TRASH_DIR).iterdir()) - before
            trashed.append(folder)
    assert [(folder / "notes.txt").read_text() for folder in trashed] == ["first", "second"]


def _halt_free(instance):
    from unittest import mock

    original = Instance.delete_everything

    def delete(keep_files=None):
        with mock.patch("instances.lifecycle.halt"), mock.patch("aikore_site.events.publish"):
            return original(instance, keep_files)

    return delete


def test_cli_create_edit_and_satellite(bp):
    out = StringIO()
    call_command("instances", "create", "--name", "Cli Env", "--blueprint", bp, "--python", "3.11",
                 "--torch", "cpu", "--git-ref", "dev", stdout=out)
    instance = Instance.objects.get(name="Cli Env")
    assert (instance.python_version, instance.torch_variant, instance.git_ref) == ("3.11", "cpu", "dev")
    call_command("instances", "create", "--name", "Cli Sat", "--blueprint", bp, "--parent", "Cli Env", stdout=out)
    assert Instance.objects.get(name="Cli Sat").parent == instance
    call_command("instances", "edit", "Cli Env", "--torch", "cu130", stdout=out)
    instance.refresh_from_db()
    assert instance.torch_variant == "cu130"
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="torch_variant"):
        call_command("instances", "edit", "Cli Env", "--torch", "gpu", stdout=out)
    listing = json.loads(_stdout("list", "--json"))
    assert {r["name"]: r["parent"] for r in listing}["Cli Sat"] == instance.pk


def _stdout(*args: str) -> str:
    out = StringIO()
    call_command("instances", *args, stdout=out)
    return out.getvalue()


def test_update_of_a_parent_with_running_satellites_is_refused(bp):
    parent = Instance.objects.create_instance(name="Busy Parent", blueprint=bp)
    sat = Instance.objects.create_instance(name="Busy Sat", blueprint=bp, parent=parent)
    Instance.objects.filter(pk=sat.pk).update(status="running")
    with pytest.raises(Conflict, match="Busy Sat"):
        parent.update_app()
    with pytest.raises(Conflict, match="Busy Sat"):
        parent.update_settings({"name": "Renamed Parent"})
    plain = Instance.objects.create_instance(name="No Install", blueprint="demo-webui")
    with pytest.raises(Conflict, match="declares no install"):
        plain.rebuild_env()


def test_launcher_takes_aikores_venv_off_path():
    venv_bin = os.path.join(sys.prefix, "bin")
    path = os.pathsep.join(["/usr/local/bin", venv_bin, "/usr/bin", "", venv_bin + "/"])
    cleaned = launcher.scrub_path(path, launcher.own_bin_dirs()).split(os.pathsep)
    assert venv_bin not in cleaned and "/usr/bin" in cleaned and "" not in cleaned
    assert {"VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH"} <= set(launcher.SCRUBBED)


def test_no_setting_of_aikores_reaches_an_instance():
    """Every AIKORE_* name AiKore reads (settings.py) or exports (docker/entry.sh), Django's and
    supervisord's variables: none reaches an instance's processes but the process markers; what an
    app needs comes from Instance.environment(). (AIKORE_NOTIFY_URLS holds notification secrets.)"""
    import re

    root = Path(settings.BASE_DIR)
    names = set(re.findall(r"\bAIKORE_[A-Z0-9_]+\b", (root / "aikore_site" / "settings.py").read_text()))
    names |= set(re.findall(r"\bAIKORE_[A-Z0-9_]+\b", (root / "docker" / "entry.sh").read_text()))
    assert {"AIKORE_NOTIFY_URLS", "AIKORE_SECRET_KEY", "AIKORE_PYTHON", "AIKORE_STACK_ID"} <= names
    base = {name: "x" for name in names}
    base.update({"DJANGO_SETTINGS_MODULE": "x", "DATABASE_URL": "x", "SUPERVISOR_SERVER_URL": "x",
                 "SUPERVISOR_ENABLED": "1", "AIKORE_SOMETHING_NEW": "x", "HOME": "/home/u", "UV_INDEX_URL": "x"})
    env = launcher.child_environment(base, {"AIKORE_HOME": "/app", "WEBUI_PORT": "19001"})
    passed = {name for name in env if name.startswith(("AIKORE_", "DJANGO_", "SUPERVISOR_")) or name == "DATABASE_URL"}
    assert passed == {"AIKORE_HOME", "AIKORE_STACK_ID"}, passed  # the instance's, and the stack's marker
    assert env["HOME"] == "/home/u" and env["UV_INDEX_URL"] == "x" and env["WEBUI_PORT"] == "19001"


def test_install_events_are_signalled(bp):
    """install_finished when the blueprint says it launches; install_failed (step, reason, log tail)
    when it exits mid-install: sent by the lifecycle (here in-process, without processes)."""
    from unittest import mock

    from instances import lifecycle
    from instances.models import InstanceStatus
    from instances.signals import instance_event

    received: list[dict] = []

    def receiver(sender, instance, kind, **details):
        received.append({"kind": kind, "name": instance.name, **details})

    instance_event.connect(receiver)
    try:
        instance = Instance.objects.create_instance(name="Signalled", blueprint=bp)
        Instance.objects.filter(pk=instance.pk).update(status=InstanceStatus.STARTING, pid=4242, want_running=True)
        instance.refresh_from_db()
        watch = lifecycle._InstallWatch(instance)
        instance.install_status_path.write_text('{"phase": "installing", "step": "fetching", "current": 1, "total": 4}')
        with mock.patch("aikore_site.events.publish"):
            assert watch.poll(instance.pk, 4242, instance.generation) is False
            instance.refresh_from_db()
            assert (instance.status, instance.install_step, instance.install_progress) == ("installing", "fetching", 0.25)
            os.utime(instance.install_status_path, ns=(1, 1))  # a new stamp even within one clock tick
            instance.install_status_path.write_text('{"phase": "launching"}')
            assert watch.poll(instance.pk, 4242, instance.generation) is True
        instance.refresh_from_db()
        assert instance.status == "starting" and instance.install_step == ""
        assert [r["kind"] for r in received] == ["install_finished"]

        instance.install_status_path.write_text('{"phase": "installing", "step": "building kernels"}')
        instance.append_log("error: nvcc not found")
        with mock.patch("aikore_site.events.publish"), mock.patch("instances.lifecycle._update_proxy"):
            lifecycle.handle_exit(instance.pk, 4242, 2)
        instance.refresh_from_db()
        assert instance.status == "failed" and "building kernels" in instance.error_message
        failed = received[-1]
        assert failed["kind"] == "install_failed" and failed["step"] == "building kernels"
        assert "nvcc not found" in failed["log_tail"] and "exit code 2" in failed["reason"]
    finally:
        instance_event.disconnect(receiver)
