"""The Django admin for instances: list, filters, search, actions that enqueue the same jobs as every
other entry point, and an edit form that validates like the API (no live processes needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from huey.contrib.djhuey import HUEY

from instances.models import Instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def bp() -> str:
    (Path(settings.CUSTOM_BLUEPRINTS_DIR) / "admin-bp.sh").write_text("# aikore.ready: none\nexec sleep 100\n")
    return "admin-bp"


@pytest.fixture
def staff(alice) -> Client:
    c = Client(enforce_csrf_checks=True)
    c.get("/login/")
    c.force_login(alice)
    return c


def form_data(c: Client, instance: Instance, **changes: object) -> dict:
    data = {
        "name": instance.name, "gpu_ids": instance.gpu_ids, "port": instance.port or "",
        "launch_args": instance.launch_args, "output_path": instance.output_path,
        "csrfmiddlewaretoken": c.cookies[settings.CSRF_COOKIE_NAME].value,
        "_save": "Save",
    }
    if instance.autostart:
        data["autostart"] = "on"
    data.update(changes)
    return data


def test_changelist_shows_status_gpus_port_and_filters(staff, bp):
    from instances.ports import port_is_bindable

    low, high = settings.AIKORE_INSTANCE_PORT_RANGE
    port = next(p for p in range(high, low - 1, -1) if port_is_bindable(p))
    Instance.objects.create_instance(name="Comfy A", blueprint=bp, gpu_ids="", port=port)
    Instance.objects.create_instance(name="Trainer B", blueprint=bp, autostart=True)
    page = staff.get("/admin/instances/instance/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Comfy A" in html and "Trainer B" in html and str(port) in html and ">stopped<" in html
    assert "By status" in html or "status__exact" in html
    found = staff.get("/admin/instances/instance/?q=Trainer").content.decode()
    assert "Trainer B" in found and "Comfy A" not in found
    only_autostart = staff.get("/admin/instances/instance/?autostart__exact=1").content.decode()
    assert "Trainer B" in only_autostart and "Comfy A" not in only_autostart


@pytest.fixture
def stack_without_worker(stack):
    """The live stack's supervisord (start/stop refuse to queue a job it could not carry out),
    with its worker paused so the queued jobs stay in the queue to be looked at."""
    stack.supervisorctl("stop", "worker")
    try:
        yield stack
    finally:
        HUEY.flush()
        stack.supervisorctl("start", "worker")


@pytest.mark.stack
def test_actions_enqueue_lifecycle_jobs(stack_without_worker, staff, bp):
    one = Instance.objects.create_instance(name="One", blueprint=bp)
    two = Instance.objects.create_instance(name="Two", blueprint=bp)
    HUEY.flush()
    response = staff.post("/admin/instances/instance/", {
        "action": "start_selected", "_selected_action": [one.pk, two.pk],
        "csrfmiddlewaretoken": staff.cookies[settings.CSRF_COOKIE_NAME].value,
    })
    assert response.status_code == 302
    assert HUEY.pending_count() == 2
    assert {t.name for t in HUEY.pending()} == {"start_instance"}
    assert Instance.objects.filter(want_running=True).count() == 2
    HUEY.flush()
    staff.post("/admin/instances/instance/", {
        "action": "stop_selected", "_selected_action": [one.pk],
        "csrfmiddlewaretoken": staff.cookies[settings.CSRF_COOKIE_NAME].value,
    })
    assert [t.name for t in HUEY.pending()] == ["stop_instance"]
    one.refresh_from_db()
    assert one.want_running is False
    HUEY.flush()


@pytest.mark.parametrize("field,value,message", [
    ("name", "../x", "name"),
    ("name", "a;b", "name"),
    ("gpu_ids", "0,abc", "GPU"),
    ("port", "80", "port"),
    ("output_path", "../../etc", "output"),
])
def test_edit_form_refuses_what_the_api_refuses(staff, bp, field, value, message):
    instance = Instance.objects.create_instance(name="Editable", blueprint=bp)
    response = staff.post(f"/admin/instances/instance/{instance.pk}/change/", form_data(staff, instance, **{field: value}))
    assert response.status_code == 200  # the form again, with the error
    assert "errornote" in response.content.decode() or "errorlist" in response.content.decode()
    instance.refresh_from_db()
    assert instance.name == "Editable" and instance.gpu_ids == "" and instance.output_path == ""


def test_edit_form_renames_through_update_settings(staff, bp):
    instance = Instance.objects.create_instance(name="Old Name", blueprint=bp)
    old_dir = instance.directory
    response = staff.post(f"/admin/instances/instance/{instance.pk}/change/",
                          form_data(staff, instance, name="New Name", autostart="on"))
    assert response.status_code == 302, response.content.decode()[:2000]
    instance.refresh_from_db()
    assert (instance.name, instance.slug, instance.autostart) == ("New Name", "new-name", True)
    assert instance.script_path.exists() and not old_dir.exists()


def test_edit_form_name_conflict(staff, bp):
    Instance.objects.create_instance(name="Taken", blueprint=bp)
    instance = Instance.objects.create_instance(name="Mine", blueprint=bp)
    response = staff.post(f"/admin/instances/instance/{instance.pk}/change/", form_data(staff, instance, name="taken"))
    assert response.status_code == 200
    assert "already exists" in response.content.decode()


def test_edit_form_reports_every_bad_field_at_once(staff, bp):
    instance = Instance.objects.create_instance(name="Two Errors", blueprint=bp)
    response = staff.post(f"/admin/instances/instance/{instance.pk}/change/",
                          form_data(staff, instance, name="a;b", gpu_ids="0,abc"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "field-name" in html and "field-gpu_ids" in html and html.count('class="errorlist') >= 2


def test_djangos_own_delete_is_not_offered(staff, bp):
    """It would drop the row alone, leaving the processes, the supervisord group and the folder:
    the "Delete selected instances" action deletes as every other entry point does."""
    instance = Instance.objects.create_instance(name="No Plain Delete", blueprint=bp)
    assert staff.get(f"/admin/instances/instance/{instance.pk}/delete/").status_code == 403
    changelist = staff.get("/admin/instances/instance/").content.decode()
    assert 'value="delete_selected"' not in changelist and 'value="delete_selected_instances"' in changelist
    change = staff.get(f"/admin/instances/instance/{instance.pk}/change/").content.decode()
    assert "deletelink" not in change


def test_edit_form_saves_and_says_so_when_the_restart_cannot_be_asked_for(staff, bp):
    from unittest import mock

    instance = Instance.objects.create_instance(name="Restart Later", blueprint=bp)
    Instance.objects.filter(pk=instance.pk).update(status="running", want_running=True)
    with mock.patch("instances.supervisor.is_available", return_value=False):
        response = staff.post(f"/admin/instances/instance/{instance.pk}/change/",
                              form_data(staff, instance, launch_args="--new"), follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Saved, but not restarted" in html and "supervisord is not reachable" in html
    instance.refresh_from_db()
    assert instance.launch_args == "--new"


@pytest.mark.stack
@pytest.mark.django_db(transaction=True)
def test_delete_action_stops_and_removes_like_the_api(live, staff, bp):
    from instances.tests.helpers import wait_status

    running = Instance.objects.create_instance(name="Deleted Running", blueprint=bp)
    running.start()
    running = wait_status(running, "running")
    pid, directory = running.pid, running.directory
    parent = Instance.objects.create_instance(name="Deleted Parent", blueprint=bp)
    satellite = Instance.objects.create_instance(name="Deleted Sat", blueprint=bp, parent=parent)
    lone_parent = Instance.objects.create_instance(name="Kept Parent", blueprint=bp)
    Instance.objects.create_instance(name="Kept Sat", blueprint=bp, parent=lone_parent)
    response = staff.post("/admin/instances/instance/", {
        "action": "delete_selected_instances",
        "_selected_action": [running.pk, parent.pk, satellite.pk, lone_parent.pk],
        "csrfmiddlewaretoken": staff.cookies[settings.CSRF_COOKIE_NAME].value,
    }, follow=True)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Deleted Deleted Running" in html and "Deleted Deleted Sat" in html and "Deleted Deleted Parent" in html
    assert "Kept Parent" in html and "delete them first" in html  # its satellite was not selected
    assert set(Instance.objects.values_list("name", flat=True)) == {"Kept Parent", "Kept Sat"}
    assert not directory.exists()
    import psutil

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    from instances import supervisor

    assert supervisor.process_info(running.pk) is None and not supervisor.conf_path(running.pk).exists()
